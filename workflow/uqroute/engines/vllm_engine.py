"""vLLM engine (GPU clusters), on vLLM's offline ``LLM`` API.

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
- next-token probabilities: the prompt followed by the candidate's first token,
  ``max_tokens=1, prompt_logprobs=1``; the last entry of
  ``RequestOutput.prompt_logprobs`` holds the exact full-vocabulary logprob of
  that token (top-k ``logprobs`` could miss a candidate).
- hidden states: not exposed by vLLM; the hidden pass always runs on :class:`~uqroute.engines.hf.HFEngine`.
- end of reply: vLLM stops at the tokenizer's EOS and at every EOS id of the
  model's ``generation_config.json`` and keeps that token in ``token_ids``; the
  engine cuts replies at the same set of ids as the HF engine.

What the tests cover and what they cannot
-----------------------------------------

``tests/test_engine_vllm.py`` runs this class against a fake ``vllm`` module
whose ``LLM``/``SamplingParams`` follow vLLM's documented signatures and whose
outputs are built with the real SmolLM2 tokenizer: the ``LLM`` constructor
arguments, the token-id prompts, the ``SamplingParams`` of greedy, seeded
``n``-sample and p(True) requests, the mapping back to completions and
probabilities, the refusal of hidden states and the release of the ``LLM`` on
close. Untested here, because only real vLLM on a CUDA GPU can show them
(``bench/gpu_smoke.py`` is the check to run on a GPU node):

- model loading: weights, ``dtype``, ``max_model_len``, ``gpu_memory_utilization``,
  the tokenizer vLLM builds and ``llm_engine.model_config.hf_config``;
- CUDA kernels, batching and scheduling, and whether greedy outputs match the HF engine's;
- tensor parallelism (``tensor_parallel_size`` > 1) and the shutdown of its workers on close;
- vLLM's own ``SamplingParams`` validation and defaults, and what ``seed``
  reproduces (per-request generators, across vLLM versions and GPU counts);
- logprob numerics: that sample logprobs are the raw temperature-1 values
  (vLLM's default ``logprobs_mode``) and prompt logprobs the full-vocabulary
  ones, and prompt logprobs together with prefix caching (refused by early V1
  releases);
- stop handling inside vLLM (EOS, generation-config stop ids, stop strings);
- hidden states, which vLLM does not serve: :meth:`VLLMEngine.hidden_states` refuses them.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models import ModelSpec
from .base import Completion, Conversation, EngineError
from .rendering import (
    build_completion,
    candidate_token_ids,
    encode_prompt,
    eos_token_ids,
    render_prompt,
    sample_seed,
)


def generation_params(
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    n: int,
    seed: int,
    stop: Sequence[str],
) -> list[dict[str, Any]]:
    """Keyword arguments of one ``vllm.SamplingParams`` per prompt."""
    params = []
    for ids in prompt_ids:
        kwargs: dict[str, Any] = {
            "temperature": float(temperature) if temperature > 0 else 0.0,
            "top_p": float(top_p) if temperature > 0 else 1.0,
            "max_tokens": int(max_new_tokens),
            "n": int(n),
            "logprobs": 1,
            "skip_special_tokens": True,
        }
        if temperature > 0:
            kwargs["seed"] = sample_seed(seed, ids, 0)
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


def next_token_prompts(prompt_ids: Sequence[Sequence[int]], candidate_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """One prompt per (conversation, candidate), conversation-major: the prompt plus the candidate's token."""
    return [list(ids) + [int(c)] for ids, cands in zip(prompt_ids, candidate_ids) for c in cands]


def probs_from_prompt_logprobs(
    outputs: Sequence[Any], candidate_ids: Sequence[Sequence[int]], model_name: str = ""
) -> np.ndarray:
    """``(n_conversations, n_candidates)`` probabilities from the last prompt position of each request."""
    k = len(candidate_ids[0]) if candidate_ids else 0
    flat = []
    for r, (request, token) in enumerate(zip(outputs, (c for cands in candidate_ids for c in cands))):
        entries = request.prompt_logprobs
        if not entries or entries[-1] is None or token not in entries[-1]:
            raise EngineError(f"model {model_name}: request {r}: no prompt logprob for candidate token {token}")
        flat.append(math.exp(_logprob_value(entries[-1][token])))
    if len(flat) != len(candidate_ids) * k:
        raise EngineError(f"model {model_name}: expected {len(candidate_ids) * k} outputs, got {len(flat)}")
    return np.asarray(flat, dtype=np.float64).reshape(len(candidate_ids), k)


def _generation_config(model_path: str | os.PathLike):
    """The model's ``GenerationConfig`` (vLLM stops at its EOS ids too), or None when it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(model_path))
    except OSError:
        return None


class VLLMEngine:
    """Engine on ``vllm.LLM``; same interface and prompt tokens as :class:`~uqroute.engines.hf.HFEngine`.

    ``batch_size``/``threads``/``device`` are accepted for config symmetry and
    ignored: vLLM schedules its own batches on the GPUs it is given.
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
        seed: int = 0,
        batch_size: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                f"model {spec.name}: engine 'vllm' needs the vllm package and a CUDA GPU "
                "(pip install 'uqroute[gpu]'); on CPU use engine kind 'hf'"
            ) from err
        self._vllm = vllm
        self.spec = spec
        self.model_name = spec.name
        self.progress = progress
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "dtype": dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            # Samples carry their own per-request seeds; this pins whatever else vLLM draws,
            # whose default seed differs between vLLM versions.
            "seed": int(seed),
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = eos_token_ids(self.tokenizer, _generation_config(model_path))
        try:
            self.eos_ids |= eos_token_ids(self.tokenizer, self.llm.llm_engine.model_config.hf_config)
        except AttributeError:
            pass

    def render(self, conversation: Conversation) -> str:
        return render_prompt(self.tokenizer, conversation, self.spec)

    def _encode(self, conversations: Sequence[Conversation]) -> tuple[list[str], list[list[int]]]:
        prompts = [self.render(c) for c in conversations]
        return prompts, [encode_prompt(self.tokenizer, p, self.spec) for p in prompts]

    def _run(self, prompt_ids: Sequence[Sequence[int]], params: list[dict[str, Any]]):
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        sampling = [self._vllm.SamplingParams(**p) for p in params]
        return self.llm.generate(requests, sampling, use_tqdm=self.progress)

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[Completion]]:
        _, prompt_ids = self._encode(conversations)
        params = generation_params(
            prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed,
            stop=self.spec.stop,
        )
        outputs = self._run(prompt_ids, params)
        return completions_from_outputs(
            self.tokenizer, outputs, eos_ids=self.eos_ids, stop=self.spec.stop, model_name=self.model_name
        )

    def next_token_probs(self, conversations: Sequence[Conversation], candidates: Sequence[str]) -> np.ndarray:
        prompts, prompt_ids = self._encode(conversations)
        cand_ids = [candidate_token_ids(self.tokenizer, p, candidates, self.model_name) for p in prompts]
        extended = next_token_prompts(prompt_ids, cand_ids)
        params = [{"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 1}] * len(extended)
        return probs_from_prompt_logprobs(self._run(extended, params), cand_ids, self.model_name)

    def hidden_states(self, conversations: Sequence[Conversation], layer: int) -> np.ndarray:
        raise NotImplementedError(
            f"model {self.model_name}: vLLM does not expose hidden states; run the hidden pass with engine kind 'hf'"
        )

    def close(self) -> None:
        self.llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
