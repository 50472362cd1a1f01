"""One request's route: the SLM answers, the workflow's UQ function scores it, the threshold decides.

The conversations the SLM sees are the workflow's: the user's messages for the answer (the
greedy pass), the same messages with the SLM's reply and the prompt file's follow-up turn for
p(True) and verbal-2s, and ``n_samples`` sampled replies at the study's temperature for the
Jaccard degree. The confidence is then :func:`uqroute.uq.score_method` on one-row pass tables,
so it is the number the study would have computed for the same conversation.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from uqroute.engines.base import Completion, Conversation, Engine, EngineError, Sampling
from uqroute.engines import make_engine
from uqroute.engines.openai_engine import OpenAIEngine
from uqroute.gguf import materialize
from uqroute.grading import read_item_reply
from uqroute.models import model_spec
from uqroute.passes import PASSES, counted_answer, default_weak_readings, hidden_spec
from uqroute.paths import model_cache
from uqroute.prompts import PromptSet
from uqroute.uq import method_spec, score_method

from .batching import EngineBatcher
from .calibration import calibration_threshold, check_calibration_file
from .config import RouterConfig
from .metrics import RouterMetrics

log = logging.getLogger("uqroute.serve")
_REQUEST_ID = "request"


class UpstreamError(RuntimeError):
    """A model behind the router did not answer; the message names which (never a key)."""


@dataclass(frozen=True)
class RoutedAnswer:
    """What the router replies: the answering model's text and the routing record."""

    text: str
    model: str
    finish_reason: str
    completion_tokens: int
    routed: bool
    fallback: bool
    confidence: float  # NaN when the method gave no score (such answers are always routed)
    threshold: float


def _finish_reason(completion: Completion, budget: int) -> str:
    return "length" if len(completion.tokens) >= budget else "stop"


def model_cache_dir() -> Path:
    """Where fp32 copies of GGUF models live: ``$UQROUTE_MODEL_CACHE``, else ./results/models.

    Relative to the working directory, not to the package: an installed router has no checkout,
    and where the workflow ran, its results/ holds both the converted models and the calibration files.
    """
    return model_cache(Path.cwd() / "results")


def build_slm_engine(config: RouterConfig) -> Engine:
    """The SLM: in-process (registry model on hf or vllm) or an OpenAI-compatible endpoint with logprobs."""
    slm = config.slm
    if slm.kind == "openai":
        return OpenAIEngine(slm.model, model=slm.api_model or slm.model, base_url=slm.base_url,
                            api_key_env=slm.api_key_env, cache_dir=None, timeout=slm.timeout,
                            max_concurrency=slm.max_concurrency)
    spec = model_spec(slm.model)
    model_dir = slm.model_dir
    if model_dir is None and spec.is_gguf:
        model_dir = materialize(spec, model_cache_dir() / spec.name)
    options = dict(slm.engine_options)
    if slm.kind == "hf":
        options.setdefault("progress", False)
    return make_engine(spec, kind=slm.kind, model_dir=model_dir, **options)


def build_llm_engine(config: RouterConfig) -> OpenAIEngine:
    llm = config.llm
    return OpenAIEngine(llm.model, model=llm.api_model or llm.model, base_url=llm.base_url,
                        api_key_env=llm.api_key_env, cache_dir=llm.cache_dir, max_retries=llm.max_retries,
                        timeout=llm.timeout, max_concurrency=llm.max_concurrency)


def load_served_probe(config: RouterConfig):
    """The released probe's confidence function and hidden layer, loaded by its method's ``load`` function; refused
    (naming both) when it was learned for another SLM or method."""
    score, record = method_spec(config.method).load_fn()(config.probe)
    if (record["slm"], record["method"]) != (config.slm.model, config.method):
        raise ValueError(f"probe file {config.probe} was trained for SLM {record['slm']} with method "
                         f"{record['method']}, but the router serves SLM {config.slm.model} with method "
                         f"{config.method}")
    log.info("probe %s: layer %d, learned on %s", config.probe, record["layer"], ", ".join(record["datasets"]))
    return score, int(record["layer"])


class Router:
    """Answers conversations: SLM first, LLM when the SLM's confidence is below the threshold."""

    def __init__(self, config: RouterConfig, slm: Engine, llm: OpenAIEngine, threshold: float,
                 metrics: RouterMetrics, prompts: PromptSet | None = None, probe: Any = None,
                 probe_layer: int | None = None) -> None:
        self.config = config
        self.probe, self.probe_layer = probe, probe_layer
        self.method = config.method
        spec = method_spec(config.method)
        # The hidden-state pass a probe reads; one that reads the question alone decides before the SLM answers.
        self.hidden = hidden_spec(spec.hidden) if spec.needs_hidden else None
        self.decides_first = self.hidden is not None and not self.hidden.follows_greedy
        self.threshold = float(threshold)
        self.slm_name = config.slm.model
        self.llm_name = config.llm.model
        self.prompts = prompts or PromptSet.load()
        self.settings = config.generation.model_dump()  # what the passes' declarations read
        self.batcher = EngineBatcher(slm, max_batch_size=config.batching.max_batch_size,
                                     max_wait=config.batching.max_wait_ms / 1000.0,
                                     on_batch=metrics.slm_batch)
        self.metrics = metrics
        self.llm = llm
        self._llm_pool = ThreadPoolExecutor(max_workers=config.llm.max_concurrency,
                                            thread_name_prefix="llm")

    @classmethod
    def from_config(cls, config: RouterConfig) -> "Router":
        """Check the calibration file first (cheap), then load the models; metrics from the drift settings."""
        check_calibration_file(config.calibration, config.slm.model, config.method)
        threshold = calibration_threshold(config.calibration, config.ratio, config.calibration_run)
        probe, probe_layer = load_served_probe(config) if config.probe is not None else (None, None)
        log.info("threshold %.6g routes %.3f of calibration run %d of %s", threshold, config.ratio,
                 config.calibration_run, config.calibration)
        llm = build_llm_engine(config)
        try:
            slm = build_slm_engine(config)
        except BaseException:
            llm.close()
            raise
        drift = config.drift
        metrics = RouterMetrics(config.ratio, window=drift.window, band=drift.band, min_requests=drift.min_requests)
        return cls(config, slm, llm, threshold, metrics, probe=probe, probe_layer=probe_layer)

    # ------------------------------------------------------------------ confidence

    def item(self, messages: Conversation, task_type: str, choices: Sequence[str] | None) -> dict[str, Any]:
        """The request as a data-contract row: what the grading and prompt helpers read."""
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        return {"id": _REQUEST_ID, "dataset": "request", "task_type": task_type, "question": question,
                "context": None, "choices": list(choices) if choices else None}

    async def slm_answer(self, messages: Conversation, item: Mapping[str, Any],
                         max_tokens: int | None) -> tuple[Completion, int]:
        """The greedy pass's decoding on the user's messages (the request's ``max_tokens`` replaces the budget)."""
        decoding = PASSES["greedy"].decoding(self.settings, item["task_type"], self.prompts)
        if max_tokens:
            decoding["max_new_tokens"] = int(max_tokens)
        sampling = Sampling(**decoding)
        (completion,) = await self.batcher.generate(messages, sampling)
        return completion, sampling.max_new_tokens

    async def confidence(self, messages: Conversation, item: Mapping[str, Any], answer: Completion) -> float:
        """The method's confidence in ``answer``, by the workflow's function; NaN when it gives none."""
        greedy = pd.DataFrame(PASSES["greedy"].rows(_REQUEST_ID, item, [answer]))
        # The answer as the workflow's rule grading counts it (judge.weak_readings at its default).
        greedy["prediction"] = [counted_answer(read_item_reply(answer.text, item), default_weak_readings())]
        # Correctness is unknown when serving; the methods carry it through, none reads it to score.
        greedy["correct"] = False
        if self.probe is not None:
            return await self.probe_confidence(messages, item, answer)
        # The passes the method declares (uqroute.uq.registry), each as the workflow's pass makes it.
        passes = {"greedy": greedy}
        for pass_name in method_spec(self.method).passes:
            if pass_name not in passes:
                passes[pass_name] = await self._pass(pass_name, messages, item, answer)
        questions = pd.DataFrame([item])
        scored = score_method(self.method, passes, questions)
        return float(scored["confidence"].iloc[0])

    async def probe_confidence(self, messages: Conversation, item: Mapping[str, Any],
                               answer: Completion | None) -> float:
        """The probe's confidence: the workflow's hidden-state pass of the method on the user's messages (closed
        by the SLM's answer where the pass quotes it; none exists yet for a probe of the question alone)."""
        conversation = self.hidden.prompt(self.prompts, item, None if answer is None else answer.text, messages)
        vector = await self.batcher.hidden_states(conversation, self.probe_layer)
        return float(self.probe(np.asarray([vector], dtype=np.float32))[0])

    async def _pass(self, pass_name: str, messages: Conversation, item: Mapping[str, Any],
                    answer: Completion) -> pd.DataFrame:
        """One follow-up pass of the workflow for this request (its declaration in uqroute.passes.PASSES: prompt,
        decoding, rows), on the user's messages instead of the answer prompt."""
        spec = PASSES[pass_name]
        conversation = spec.conversation(self.prompts, item, answer.text, self.settings, opening=messages)
        decoding = spec.decoding(self.settings, item["task_type"], self.prompts)
        if spec.generates:
            output = await self.batcher.generate(conversation, Sampling(**decoding))
        else:
            output = await self.batcher.next_token_probs(conversation, tuple(decoding["candidates"]))
        return pd.DataFrame(spec.rows(_REQUEST_ID, item, output))

    # ------------------------------------------------------------------ answer

    async def answer(self, messages: Conversation, *, task_type: str, choices: Sequence[str] | None = None,
                     max_tokens: int | None = None, temperature: float | None = None) -> RoutedAnswer:
        """Route one conversation; :class:`UpstreamError` when no model could answer."""
        item = self.item(messages, task_type, choices)
        slm_reply = budget = None
        try:
            if self.decides_first:  # a probe of the question alone: a routed request never reaches the SLM's decoder
                confidence = await self.probe_confidence(messages, item, None)
            else:
                slm_reply, budget = await self.slm_answer(messages, item, max_tokens)
                confidence = await self.confidence(messages, item, slm_reply)
            # The study's rule: keep the answer when confidence >= threshold; no confidence: route.
            routed = not confidence >= self.threshold
            if slm_reply is None and not routed:
                slm_reply, budget = await self.slm_answer(messages, item, max_tokens)
        except (EngineError, OSError) as err:
            raise UpstreamError(f"SLM {self.slm_name} failed: {err}") from err
        common = {"routed": routed, "confidence": confidence, "threshold": self.threshold}
        if not routed:
            return RoutedAnswer(slm_reply.text, self.slm_name, _finish_reason(slm_reply, budget),
                                len(slm_reply.tokens), fallback=False, **common)
        llm_budget = int(max_tokens or self.config.llm.max_tokens)
        llm_sampling = Sampling(max_new_tokens=llm_budget, temperature=temperature or 0.0)
        try:
            (llm_reply,), = await asyncio.get_running_loop().run_in_executor(
                self._llm_pool, lambda: self.llm.generate([messages], llm_sampling))
        except EngineError as err:
            if self.config.llm.on_failure == "error":
                raise UpstreamError(f"LLM {self.llm_name} failed: {err}") from err
            log.warning("LLM %s failed, answering with the SLM (fallback): %s", self.llm_name, err)
            if slm_reply is None:
                try:
                    slm_reply, budget = await self.slm_answer(messages, item, max_tokens)
                except (EngineError, OSError) as slm_err:
                    raise UpstreamError(f"LLM {self.llm_name} failed ({err}), and so did the SLM: {slm_err}") from err
            return RoutedAnswer(slm_reply.text, self.slm_name, _finish_reason(slm_reply, budget),
                                len(slm_reply.tokens), fallback=True, **common)
        return RoutedAnswer(llm_reply.text, self.llm_name, _finish_reason(llm_reply, llm_budget),
                            len(llm_reply.tokens), fallback=False, **common)

    def close(self) -> None:
        self._llm_pool.shutdown(wait=False, cancel_futures=True)
        self.batcher.close()
        self.llm.close()
