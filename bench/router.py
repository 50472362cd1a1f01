"""Router overhead per request against a direct call to the same SLM, and router throughput at concurrency 1/8/32.

Equal terms on both sides: SmolLM2-135M fp32 on the hf engine (1 torch thread, engine batch size 16),
the embedded default's commonsenseqa test questions (mcq, 12 new tokens, greedy), method perplexity
(no extra model call). The direct side is ``HFEngine.generate`` on one conversation at a time in
this process; the router side is ``uqroute serve`` in a subprocess, asked with the official openai
client over HTTP, which adds HTTP + JSON, the batcher's queue and wait (max_wait_ms), and the
scoring by the workflow's UQ function. The router is started with ratio 0 (threshold -inf), so it
keeps every answer and the LLM is never called: what is measured is the SLM path the router adds
to. Its calibration file holds the direct run's own perplexity confidences.

    OMP_NUM_THREADS=1 .venv/bin/python bench/router.py [--questions 32] [--max-wait-ms 10]

Prints mean latency of each side at concurrency 1 and their ratio, then requests/s of the router
at concurrency 1, 8 and 32 (and the speed-up over concurrency 1), with ``uptime`` before and after:
the machine's two cores are shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from uqroute import REPO_ROOT
from uqroute.paths import model_cache
from uqroute.datasets import load_split, take_subset
from uqroute.io import write_parquet
from uqroute.engines import Sampling, make_engine
from uqroute.gguf import materialize
from uqroute.models import model_spec
from uqroute.prompts import PromptSet
from uqroute.uq import score_method

sys.path.insert(0, str(REPO_ROOT / "tests"))
import serve_processes as sp  # noqa: E402  (the tests' server helpers: free port, start, health, stop)

BUDGET = 12  # the embedded default's mcq token budget


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=32, help="requests per measurement")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="router batcher wait")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UQROUTE_DATA_DIR",
                                                                               REPO_ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU
    print("load before:", _uptime())
    spec = model_spec("smollm2-135m")
    cache = model_cache(REPO_ROOT / "results")
    model_dir = materialize(spec, cache / spec.name)
    questions = take_subset(load_split("commonsenseqa", "test", args.data_dir), 40, 50)
    questions = pd.concat([questions] * (1 + args.questions // len(questions)), ignore_index=True)
    questions = questions.head(args.questions).assign(id=[f"q{i}" for i in range(args.questions)])
    prompts = PromptSet.load()
    conversations = [prompts.answer(item) for item in questions.to_dict("records")]

    engine = make_engine(spec, kind="hf", model_dir=model_dir, dtype="float32", batch_size=16, threads=1,
                         progress=False)
    greedy_decoding = Sampling(max_new_tokens=BUDGET)
    engine.generate(conversations[:1], greedy_decoding)  # warm-up
    direct, replies = [], []
    for conversation in conversations:
        start = time.perf_counter()
        (reply,) = engine.generate([conversation], greedy_decoding)[0]
        direct.append(time.perf_counter() - start)
        replies.append(reply)
    engine.close()
    greedy = pd.DataFrame({"id": questions["id"], "response": [r.text for r in replies],
                           "tokens": [r.tokens for r in replies], "token_logprobs": [r.token_logprobs for r in replies],
                           "prediction": None, "correct": False})
    scored = score_method("perplexity", {"greedy": greedy}, questions)

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"uqroute-bench-router-{os.getpid()}"
    calibration = workdir / "release" / spec.name / "perplexity.parquet"
    write_parquet(pd.DataFrame({"run": 0, "source_dataset": "commonsenseqa", "id": questions["id"],
                                "confidence": scored["confidence"], "bin": 0, "seed": 50}), calibration)
    port = sp.free_port()
    config = workdir / "router.yaml"
    config.write_text(yaml.safe_dump({
        "calibration": str(calibration), "method": "perplexity", "ratio": 0.0,
        "slm": {"model": spec.name, "model_dir": str(model_dir),
                "engine_options": {"device": "cpu", "dtype": "float32", "batch_size": 16, "threads": 1}},
        # Never called at ratio 0 (threshold -inf); nothing listens there.
        "llm": {"model": "unused", "base_url": "http://127.0.0.1:9/v1"},
        "default_task_type": "mcq",
        "batching": {"max_batch_size": 32, "max_wait_ms": args.max_wait_ms},
        "server": {"port": port, "log_level": "warning"},
    }))
    server = sp.start(sp.uqroute_command(config), port, workdir / "router.log")
    try:
        import openai

        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=600)
        requests = [{"model": "uqroute", "messages": c,
                     "extra_body": {"uqroute": {"task_type": "mcq", "choices": [str(x) for x in item["choices"]]}}}
                    for c, item in zip(conversations, questions.to_dict("records"))]

        def ask(request) -> float:
            start = time.perf_counter()
            answer = client.chat.completions.create(**request)
            assert answer.model == spec.name, answer.model
            return time.perf_counter() - start

        ask(requests[0])  # warm-up
        throughput = {}
        latencies = {}
        for concurrency in (1, 8, 32):
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                latencies[concurrency] = list(pool.map(ask, requests))
            throughput[concurrency] = len(requests) / (time.perf_counter() - start)
    finally:
        sp.stop(server)

    d, r = statistics.mean(direct), statistics.mean(latencies[1])
    print(f"\nSmolLM2-135M fp32, hf engine, 1 thread, {len(requests)} commonsenseqa questions, {BUDGET} new tokens, "
          f"perplexity, batcher wait {args.max_wait_ms:g} ms")
    print(f"direct engine call, one at a time : {d * 1000:8.1f} ms/request (median {statistics.median(direct) * 1000:.1f})")
    print(f"router over HTTP, concurrency 1   : {r * 1000:8.1f} ms/request (median "
          f"{statistics.median(latencies[1]) * 1000:.1f})")
    print(f"router overhead ratio (router / direct): {r / d:.3f}  (+{(r - d) * 1000:.1f} ms per request)")
    for concurrency, rate in throughput.items():
        print(f"router throughput at concurrency {concurrency:2d}: {rate:6.2f} requests/s "
              f"({rate / throughput[1]:.2f}x concurrency 1; mean latency {statistics.mean(latencies[concurrency]):.2f} s)")
    print("load after:", _uptime())


if __name__ == "__main__":
    main()
