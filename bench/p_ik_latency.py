"""What routing on P(IK) saves: the time until the router's decision, with a probe of the answered conversation
(the OOD probe) against one of the question alone (OOD P(IK)).

The OOD probe decides after the SLM has answered (greedy decoding, then a prefill of the answered conversation
for its hidden state); OOD P(IK) decides after one prefill of the question, so a request it routes never reaches
the SLM's decoder, and one it keeps pays that prefill on top of the answer. Both probes are learned here as the
workflow learns them (``uqroute.uq.probes.release_probe``) on CommonsenseQA's train questions and answers, and
served by the router's own code (``uqroute.serve.router.Router``) on CommonsenseQA test questions, one request at
a time. Equal terms: SmolLM2-135M fp32 on the hf engine, 1 torch thread, the embedded default's budgets
(mcq: 12 new tokens), the same questions.

    OMP_NUM_THREADS=1 .venv/bin/python bench/p_ik_latency.py [--train 32] [--questions 24]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from uqroute import REPO_ROOT
from uqroute.datasets import load_split, take_subset
from uqroute.engines import make_engine
from uqroute.gguf import materialize
from uqroute.machine import cpu_description
from uqroute.models import model_spec
from uqroute.passes import pass_settings, run_hidden, run_pass
from uqroute.paths import model_cache
from uqroute.prompts import PromptSet
from uqroute.uq.probes import release_probe

SLM, DATASET = "smollm2-135m", "commonsenseqa"
CONFIG = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=32, help="train questions the probes learn from")
    parser.add_argument("--questions", type=int, default=24, help="test requests per method")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UQROUTE_DATA_DIR",
                                                                             REPO_ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    model_dir = materialize(model_spec(SLM), model_cache(REPO_ROOT / "results"))
    engine = make_engine(model_spec(SLM), kind="hf", model_dir=model_dir, dtype="float32", threads=1, batch_size=16)
    prompts = PromptSet.load()
    train = take_subset(load_split(DATASET, "train", args.data_dir), args.train, 50)
    test = take_subset(load_split(DATASET, "test", args.data_dir), args.questions, 50)
    settings = pass_settings("greedy", CONFIG["generation"], ["mcq"])
    greedy = run_pass("greedy", engine, train, prompts, settings)
    layer = int(CONFIG["hidden"]["layer"])
    probe = {k: v for k, v in CONFIG["probe"].items() if k not in ("lr", "crossfit_folds")}
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for method, hidden_pass in (("ood_probe", "hidden"), ("ood_p_ik", "hidden_question")):
            hidden = run_hidden(engine, train, greedy, prompts, layer, 16, hidden_pass=hidden_pass)
            files[method] = Path(folder) / f"{method}.probe.pt"
            release_probe(training={DATASET: (hidden, greedy)}, probe=probe, path=files[method], slm=SLM,
                          method=method, layer=layer)
        print(f"probes learned on {len(train)} {DATASET} train questions ({int(greedy['correct'].sum())} right)")
        engine.close()
        timings = {method: decision_times(model_dir, prompts, test, method, files[method]) for method in files}
    probe_mean, p_ik_mean = (statistics.mean(timings[m]) for m in ("ood_probe", "ood_p_ik"))
    print(f"time to the routing decision, mean of {len(test)} requests one at a time (s):")
    for method, times in timings.items():
        print(f"  {method:<10} {statistics.mean(times):.3f} (median {statistics.median(times):.3f}, "
              f"min {min(times):.3f}, max {max(times):.3f})")
    print(f"a request P(IK) routes saves {probe_mean - p_ik_mean:.3f} s of SLM work "
          f"({probe_mean / p_ik_mean:.1f}x faster to its decision); one it keeps pays its {p_ik_mean:.3f} s prefill "
          "on top of the answer")


def decision_times(model_dir, prompts, test, method: str, probe_file: Path) -> list[float]:
    """Seconds from a request to the router's decision, per test question, for ``method``'s released probe (the
    router's own SLM engine, as ``uqroute serve`` builds it; no LLM is called)."""
    from uqroute.serve.config import RouterConfig
    from uqroute.serve.metrics import RouterMetrics
    from uqroute.serve.router import Router, ServedMethod, load_served_probe
    from uqroute.serve.usage import RequestUsage

    # Only what the decision reads: the method, its probe file and the SLM (no calibration file, no LLM call).
    config = RouterConfig.model_construct(method=method, probe=str(probe_file), slm=_slm(), llm=_llm(),
                                          generation=RouterConfig.model_fields["generation"].default,
                                          batching=RouterConfig.model_fields["batching"].default)
    score, layer = load_served_probe(SLM, method, str(probe_file))
    served = ServedMethod(method, str(probe_file), np.array([0.5]), 0.5, score, layer)
    engine = make_engine(model_spec(SLM), kind="hf", model_dir=model_dir, dtype="float32", threads=1, batch_size=16)
    router = Router(config, engine, llm=_NoLLM(), methods=[served],
                    metrics=RouterMetrics(0.5, window=8, band=1.0, min_requests=8), prompts=prompts)
    times = []
    try:
        for item in test.to_dict("records"):
            messages = prompts.answer(item)
            request = router.item(messages, item["task_type"], item["choices"])
            usage = RequestUsage()
            start = time.perf_counter()
            if served.decides_first:
                asyncio.run(router.probe_confidence(served, messages, request, None, usage))
            else:
                reply, _ = asyncio.run(router.slm_answer(messages, request, None, usage))
                asyncio.run(router.confidence(served, messages, request, reply, usage))
            times.append(time.perf_counter() - start)
    finally:
        router.close()  # and its engine
    return times


class _NoLLM:
    """The decision is timed before any LLM call: none is made."""

    def close(self) -> None:
        pass


def _slm():
    from uqroute.serve.config import SLMSettings

    return SLMSettings.model_construct(model=SLM, kind="hf")


def _llm():
    from uqroute.serve.config import LLMSettings

    return LLMSettings.model_construct(model="gemma3-270m", max_concurrency=1)


if __name__ == "__main__":
    main()
