"""The router under load: its added latency and where it goes, time to first byte, throughput, and many streams.

Equal terms on both sides: SmolLM2-135M fp32 on the hf engine (``--threads`` torch threads, 1 by
default; engine batch size 16), the embedded default's commonsenseqa test questions (mcq, 12 new
tokens, greedy), method perplexity (no extra model call). The router is ``uqroute serve`` in a
subprocess running this checkout's code, asked with the official openai client over HTTP, at ratio 0
(threshold -inf): it keeps every answer and the LLM is never called, so what is measured is the SLM
path the router adds to. Its calibration file holds the direct run's own perplexity confidences.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/router.py [--questions 32] \\
        [--requests 64] [--streams 64] [--max-wait-ms 10] [--threads 1]

At concurrency 1, each question is asked in turn of every layer (so the load of the shared machine
weighs on all of them alike): the engine directly (``HFEngine.generate`` on one conversation), the
batcher in this process (queue, worker thread, wait), the router's ``decide`` in this process (token
counts, scoring), then the server over HTTP, whole and streamed. Each layer's mean minus the one
below is what it adds. Time to first byte: a whole answer's response headers, a stream's first
chunk carrying text. Then requests/s at concurrency 1, 8 and 32 (``--requests`` each) with the mean
SLM batch the server ran (from /metrics), the engine's own ceiling (one call of 16 conversations
against 16 one at a time), and ``--streams`` concurrent streams that must all end normally: one
finish_reason each, the usage chunk, /metrics counting every one. ``uptime`` before and after: the
machine's two cores are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from uqroute import REPO_ROOT
from uqroute.datasets import load_split, take_subset
from uqroute.engines import Sampling
from uqroute.io import write_parquet
from uqroute.models import model_spec
from uqroute.paths import model_cache
from uqroute.gguf import materialize
from uqroute.prompts import PromptSet
from uqroute.serve.config import load_config
from uqroute.serve.router import Router
from uqroute.uq import score_method

sys.path.insert(0, str(REPO_ROOT / "tests"))
import serve_processes as sp  # noqa: E402  (the tests' server helpers: free port, start, health, stop)

BUDGET = 12  # the embedded default's mcq token budget
ENGINE_BATCH = 16


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _ms(values) -> str:
    return f"{statistics.mean(values) * 1000:8.1f} ms (median {statistics.median(values) * 1000:7.1f})"


def _metric(base_url: str, name: str) -> float:
    """The sum of one /metrics series over its labels."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=32, help="questions asked one at a time of every layer")
    parser.add_argument("--requests", type=int, default=64, help="requests per throughput measurement")
    parser.add_argument("--concurrency", default="1,8,32", help="throughput at these concurrencies")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streaming clients (0: none)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="router batcher wait")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both engines")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UQROUTE_DATA_DIR",
                                                                               REPO_ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    # deferred: reads torch's CPU capability, which the imports above do not load
    from uqroute.machine import cpu_description

    print(f"CPU: {cpu_description()}", flush=True)  # every figure below belongs to this CPU
    print("load before:", _uptime(), flush=True)
    spec = model_spec("smollm2-135m")
    model_dir = materialize(spec, model_cache(REPO_ROOT / "results") / spec.name)
    pool = take_subset(load_split("commonsenseqa", "test", args.data_dir), 40, 50)
    count = max(args.questions, args.requests, args.streams, ENGINE_BATCH)
    questions = pd.concat([pool] * (1 + count // len(pool)), ignore_index=True).head(count)
    questions = questions.assign(id=[f"q{i}" for i in range(count)])
    items = questions.to_dict("records")
    prompts = PromptSet.load()
    conversations = [prompts.answer(item) for item in items]
    choices = [[str(x) for x in item["choices"]] for item in items]
    engine_options = {"device": "cpu", "dtype": "float32", "batch_size": ENGINE_BATCH, "threads": args.threads}

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"uqroute-bench-router-{os.getpid()}"
    calibration = workdir / "release" / spec.name / "perplexity.parquet"
    # A placeholder until the direct run's confidences replace it below (the router in this process needs one).
    write_parquet(pd.DataFrame({"run": 0, "source_dataset": "commonsenseqa", "id": questions["id"],
                                "confidence": -1.0, "bin": 0, "seed": 50}), calibration)
    port = sp.free_port()
    config = workdir / "router.yaml"
    config.write_text(yaml.safe_dump({
        "calibration": str(calibration), "method": "perplexity", "ratio": 0.0,
        "slm": {"model": spec.name, "model_dir": str(model_dir), "engine_options": engine_options},
        # Never called at ratio 0 (threshold -inf); nothing listens there.
        "llm": {"model": "unused", "base_url": "http://127.0.0.1:9/v1"},
        "default_task_type": "mcq",
        # One lane: every question here is short, and a second engine copy would only take memory.
        "batching": {"max_batch_size": 32, "max_wait_ms": args.max_wait_ms, "long_lane": None},
        "server": {"port": port, "log_level": "warning"},
    }))
    # The same router in this process: its engine is the direct side, its batcher and decide the layers above.
    router = Router.from_config(load_config(config))
    engine = router.batcher.engine
    greedy = Sampling(max_new_tokens=BUDGET)
    loop = asyncio.new_event_loop()
    first = conversations[: args.questions]
    engine.generate(first[:1], greedy)  # warm-up
    replies = [engine.generate([c], greedy)[0][0] for c in first]
    scored = score_method("perplexity", {"greedy": pd.DataFrame({
        "id": questions["id"].head(args.questions), "response": [r.text for r in replies],
        "tokens": [r.tokens for r in replies], "token_logprobs": [r.token_logprobs for r in replies],
        "prediction": None, "correct": False})}, questions.head(args.questions))
    write_parquet(pd.DataFrame({"run": 0, "source_dataset": "commonsenseqa", "id": scored["id"],
                                "confidence": scored["confidence"], "bin": 0, "seed": 50}), calibration)

    # The subprocess runs this checkout's package, whichever one the venv has installed.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "workflow"), os.environ.get("PYTHONPATH")]))}
    server = sp.start(sp.uqroute_command(config), port, workdir / "router.log", env=env)
    try:
        # deferred: the HTTP client is needed once the server is up
        import openai

        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=600)
        requests = [{"model": "uqroute", "messages": c,
                     "extra_body": {"uqroute": {"task_type": "mcq", "choices": ch}}}
                    for c, ch in zip(conversations, choices)]

        def ask(request) -> tuple[float, float]:
            """(time to the response headers, time to the whole answer) of a non-streamed request."""
            start = time.perf_counter()
            with client.chat.completions.with_streaming_response.create(**request) as response:
                first_byte = time.perf_counter() - start
                answer = response.parse()
            assert answer.model == spec.name, answer.model
            return first_byte, time.perf_counter() - start

        def stream(request) -> tuple[float, float]:
            """(time to the first chunk carrying text, time to the end) of a streamed request, checked whole."""
            start, first_text, finishes, usage = time.perf_counter(), None, [], None
            for chunk in client.chat.completions.create(**request, stream=True,
                                                        stream_options={"include_usage": True}):
                for choice in chunk.choices:
                    if choice.delta.content and first_text is None:
                        first_text = time.perf_counter() - start
                    if choice.finish_reason is not None:
                        finishes.append(choice.finish_reason)
                if chunk.usage is not None:
                    usage = chunk.usage
            assert len(finishes) == 1 and usage is not None and usage.completion_tokens > 0, (finishes, usage)
            return first_text if first_text is not None else time.perf_counter() - start, time.perf_counter() - start

        ask(requests[0]), stream(requests[0])  # warm-up
        layers = {name: [] for name in ("direct", "batcher", "decide", "http", "http_ttfb", "stream_ttfb",
                                        "stream")}
        for conversation, ch, request in zip(first, choices, requests):
            start = time.perf_counter()
            engine.generate([conversation], greedy)
            layers["direct"].append(time.perf_counter() - start)
            start = time.perf_counter()
            loop.run_until_complete(router.batcher.generate(conversation, greedy))
            layers["batcher"].append(time.perf_counter() - start)
            start = time.perf_counter()
            loop.run_until_complete(router.decide(conversation, task_type="mcq", choices=ch))
            layers["decide"].append(time.perf_counter() - start)
            first_byte, whole = ask(request)
            layers["http_ttfb"].append(first_byte)
            layers["http"].append(whole)
            first_text, whole = stream(request)
            layers["stream_ttfb"].append(first_text)
            layers["stream"].append(whole)

        # The engine's ceiling: one call of ENGINE_BATCH conversations against the same one at a time.
        batch = conversations[:ENGINE_BATCH]
        start = time.perf_counter()
        for conversation in batch:
            engine.generate([conversation], greedy)
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        engine.generate(batch, greedy)
        batched = time.perf_counter() - start
        router.close()

        throughput = {}
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            calls, batched_conversations = (_metric(server.base_url, "uqroute_slm_batch_size_count"),
                                            _metric(server.base_url, "uqroute_slm_batch_size_sum"))
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as workers:
                latencies = [whole for _, whole in workers.map(ask, requests[: args.requests])]
            rate = args.requests / (time.perf_counter() - start)
            mean_batch = ((_metric(server.base_url, "uqroute_slm_batch_size_sum") - batched_conversations)
                          / (_metric(server.base_url, "uqroute_slm_batch_size_count") - calls))
            throughput[concurrency] = (rate, statistics.mean(latencies), mean_batch)
            print(f"  concurrency {concurrency}: {rate:.2f} requests/s, load {_uptime()}", flush=True)

        if args.streams:
            answered = _metric(server.base_url, "uqroute_requests_total")
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.streams) as workers:
                streamed = list(workers.map(stream, requests[: args.streams]))
            streams_seconds = time.perf_counter() - start
            counted = _metric(server.base_url, "uqroute_requests_total") - answered
            assert counted == args.streams, f"/metrics counted {counted} of {args.streams} streams"
    finally:
        sp.stop(server)
        loop.close()

    print(f"\nSmolLM2-135M fp32, hf engine, {args.threads} torch thread(s), engine batch {ENGINE_BATCH}, "
          f"commonsenseqa mcq, {BUDGET} new tokens greedy, perplexity, batcher wait {args.max_wait_ms:g} ms")
    print(f"\nconcurrency 1, {args.questions} questions, each asked of every layer in turn:")
    mean = {name: statistics.mean(values) for name, values in layers.items()}
    below = None
    for name, label in (("direct", "direct engine call"), ("batcher", "batcher in process"),
                        ("decide", "router decide in process (+ token counts, scoring)"),
                        ("http", "router over HTTP (+ HTTP, JSON, app)")):
        added = f"  +{(mean[name] - mean[below]) * 1000:.1f} ms" if below else ""
        print(f"  {label:52s}: {_ms(layers[name])}{added}")
        below = name
    print(f"  router overhead ratio (HTTP / direct): {mean['http'] / mean['direct']:.3f} "
          f"(+{(mean['http'] - mean['direct']) * 1000:.1f} ms per request)")
    print(f"  time to first byte, whole answer   : {_ms(layers['http_ttfb'])}")
    print(f"  time to first text chunk, streamed : {_ms(layers['stream_ttfb'])}; stream end {_ms(layers['stream'])}")
    per_request = one_by_one / ENGINE_BATCH, batched / ENGINE_BATCH
    print(f"\nengine alone: {per_request[0] * 1000:.0f} ms/request one at a time, {per_request[1] * 1000:.0f} in one "
          f"call of {ENGINE_BATCH}: the engine's own ceiling is {per_request[0] / per_request[1]:.2f}x")
    print(f"\nthroughput, {args.requests} requests each:")
    base = throughput[min(throughput)][0]
    for concurrency, (rate, latency, mean_batch) in throughput.items():
        print(f"  concurrency {concurrency:2d}: {rate:6.2f} requests/s ({rate / base:.2f}x concurrency "
              f"{min(throughput)}; mean latency {latency:.2f} s; mean SLM batch {mean_batch:.1f})")
    if args.streams:
        ttfb = [first_text for first_text, _ in streamed]
        print(f"\n{args.streams} concurrent streams: all ended with one finish_reason and the usage chunk, /metrics "
              f"+{counted:.0f}; {streams_seconds:.1f} s in all ({args.streams / streams_seconds:.2f} requests/s), "
              f"first text chunk mean {statistics.mean(ttfb):.2f} s, max {max(ttfb):.2f} s")
    print("load after:", _uptime())


if __name__ == "__main__":
    main()
