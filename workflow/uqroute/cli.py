"""The ``uqroute`` command: ``uqroute threshold`` and ``uqroute serve``.

Every option may also come from a YAML file (``--config router.yaml``, keys as in
``config/router.yaml``); an option given on the command line wins over the file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

# Command-line flag -> dotted key of config/router.yaml.
_SERVE_FLAGS = {
    "calibration": "calibration",
    "method": "method",
    "probe": "probe",
    "ratio": "ratio",
    "calibration_run": "calibration_run",
    "slm": "slm.model",
    "slm_kind": "slm.kind",
    "slm_model_dir": "slm.model_dir",
    "slm_base_url": "slm.base_url",
    "slm_api_model": "slm.api_model",
    "llm": "llm.model",
    "llm_base_url": "llm.base_url",
    "llm_api_model": "llm.api_model",
    "llm_api_key_env": "llm.api_key_env",
    "on_llm_failure": "llm.on_failure",
    "host": "server.host",
    "port": "server.port",
    "api_key_env": "server.api_key_env",
}


def _calibration_options(parser: argparse.ArgumentParser) -> None:
    """What both subcommands take: the settings file and where the threshold comes from."""
    parser.add_argument("--config", help="YAML file of router settings (config/router.yaml documents every key)")
    parser.add_argument("--calibration", help="calibration set: results/release/<slm>/<method>.parquet")
    parser.add_argument("--ratio", type=float, help="target share of questions routed to the LLM, 0..1 (0.3 = 30 %%)")
    parser.add_argument("--calibration-run", type=int, help="run (seed) of the calibration set (default 0)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uqroute", description="Uncertainty-based routing from a small to a "
                                     "large language model, with thresholds from the study's calibration data.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    threshold = commands.add_parser(
        "threshold", help="print the confidence threshold that routes a given share of questions",
        description="Print the confidence threshold that routes RATIO of the calibration set's questions to the "
                    "LLM (questions with confidence < threshold are routed), computed as the generalization rule "
                    "does (uqroute.analysis.calibration.thresholds_for_ratios).")
    _calibration_options(threshold)

    serve = commands.add_parser(
        "serve", help="start the router: an OpenAI-compatible HTTP server",
        description="Start the router: the SLM answers, the chosen method scores the answer, and questions below "
                    "the calibration threshold go to the LLM. Keys not given here come from --config "
                    "(see config/router.yaml, which documents all of them).")
    _calibration_options(serve)
    serve.add_argument("--method", help="UQ method (must match the calibration file)")
    serve.add_argument("--probe", help="ood_probe only: results/release/<slm>/ood_probe.probe.pt")
    serve.add_argument("--slm", help="SLM registry name (must match the calibration file)")
    # Kinds and failure modes are checked with the router config (its message names the key), not by argparse
    # choices: the command line stays free of the registries' imports (--help answers in 0.05 s, not 0.5 s).
    serve.add_argument("--slm-kind", help="SLM in process (hf, vllm) or at an "
                       "OpenAI-compatible endpoint (openai)")
    serve.add_argument("--slm-model-dir", help="weights folder of an in-process SLM (default: its fp32 copy)")
    serve.add_argument("--slm-base-url", help="endpoint of the SLM when --slm-kind openai")
    serve.add_argument("--slm-api-model", help="the SLM's name at its endpoint (default: --slm)")
    serve.add_argument("--llm", help="name of the LLM, reported as the answering model")
    serve.add_argument("--llm-base-url", help="OpenAI-compatible endpoint of the LLM")
    serve.add_argument("--llm-api-model", help="the LLM's name at its endpoint (default: --llm)")
    serve.add_argument("--llm-api-key-env", help="environment variable holding the LLM's API key")
    serve.add_argument("--on-llm-failure",
                       help="LLM down after retries: answer with the SLM marked fallback, or HTTP 502")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--api-key-env", help="environment variable holding a bearer token clients must send")
    return parser


def _threshold(args: argparse.Namespace) -> int:
    # deferred: pandas and scikit-learn (~3 s) load for this command only; --help imports no third-party module
    from .io import load_yaml
    from .serve.calibration import calibration_threshold

    settings = load_yaml(args.config) if args.config else {}
    calibration = args.calibration or settings.get("calibration")
    ratio = args.ratio if args.ratio is not None else settings.get("ratio")
    run = args.calibration_run if args.calibration_run is not None else settings.get("calibration_run", 0)
    if calibration is None or ratio is None:
        raise ValueError("uqroute threshold needs --calibration and --ratio (or those keys in --config)")
    if not 0 <= float(ratio) <= 1:
        raise ValueError(f"--ratio must be in [0, 1], got {ratio}")
    print(repr(calibration_threshold(calibration, float(ratio), int(run))))
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Progress bars of the engines mean nothing in a server log. tqdm reads this when it is imported, so it is
    # set before the router's config imports it.
    os.environ.setdefault("TQDM_DISABLE", "1")
    # deferred: the config's registries (pandas, ~1 s) load for this command only; --help imports no third-party module
    from .serve.config import load_config

    overrides = {key: getattr(args, flag) for flag, key in _SERVE_FLAGS.items()}
    config = load_config(args.config, overrides)
    # deferred: the server and its engines (torch, fastapi, ~4 s) load once the config is found valid
    import uvicorn

    from .serve.app import create_app
    from .serve.router import Router

    server = config.server
    api_key = os.environ[server.api_key_env] if server.api_key_env else None
    router = Router.from_config(config)
    app = create_app(router, served_model_name=server.served_model_name, api_key=api_key)
    logging.getLogger("uqroute").info("serving %s on http://%s:%d/v1 (SLM %s, LLM %s, %s, ratio %g)",
                                      server.served_model_name, server.host, server.port,
                                      router.slm_name, router.llm_name, ", ".join(router.methods), config.ratio)
    grace = config.limits.shutdown_grace
    try:
        # SIGTERM: no new connections, in-flight requests get `grace` seconds, then are cancelled.
        uvicorn.run(app, host=server.host, port=server.port, log_level=server.log_level,
                    timeout_graceful_shutdown=grace)
    finally:
        # An engine call cannot be interrupted; its thread ends with the process.
        router.close(timeout=2.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The openai client's HTTP library logs every request it sends; the router's metrics count them.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _threshold(args) if args.command == "threshold" else _serve(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Bad settings or files: one clear line, no traceback (ConfigError and CalibrationError are ValueErrors).
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"uqroute {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
