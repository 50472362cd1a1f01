"""One request's route: the SLM answers, the workflow's UQ function scores it, the threshold decides.

The conversations the SLM sees are the workflow's: the user's messages for the answer (the
greedy pass), the same messages with the SLM's reply and the prompt file's follow-up turn for
p(True) and verbal-2s, and ``n_samples`` sampled replies at the study's temperature for the
Jaccard degree. The confidence is then :func:`uqroute.uq.score_method` on one-row pass tables,
so it is the number the study would have computed for the same conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from uqroute.analysis.card import card_for_ratio, card_path_for, load_card
from uqroute.analysis.controller import ShareController
from uqroute.engines.base import Completion, Conversation, CountsTokens, Engine, EngineError, Sampling
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
from .calibration import calibration_confidences, check_calibration_file, threshold_for_ratio
from .config import RouterConfig
from .metrics import RouterMetrics
from .policy import Policy
from .upstream import LLMClient, UpstreamError
from .usage import RequestUsage

log = logging.getLogger("uqroute.serve")
_REQUEST_ID = "request"


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


def load_served_probe(slm: str, method: str, probe_file: str):
    """The released probe's confidence function and hidden layer, loaded by its method's ``load`` function; refused
    (naming both) when it was learned for another SLM or method."""
    score, record = method_spec(method).load_fn()(probe_file)
    if (record["slm"], record["method"]) != (slm, method):
        raise ValueError(f"probe file {probe_file} was trained for SLM {record['slm']} with method "
                         f"{record['method']}, but the router serves SLM {slm} with method {method}")
    log.info("probe %s: layer %d, learned on %s", probe_file, record["layer"], ", ".join(record["datasets"]))
    return score, int(record["layer"])


class ContextTooLong(ValueError):
    """A prompt that, with its token budget, does not fit the SLM's context window."""

    def __init__(self, model: str, prompt_tokens: int, budget: int, window: int) -> None:
        super().__init__(f"messages: the prompt has {prompt_tokens} tokens of {model}; with max_tokens {budget} "
                         f"that is {prompt_tokens + budget}, over the model's context window of {window} tokens")


@dataclass
class ServedMethod:
    """One method the router serves: its calibration set, its default threshold, its probe and card."""

    name: str
    calibration_path: str
    calibration: np.ndarray  # the confidences of the calibration run every ratio's threshold is set on
    threshold: float  # routes the server's ratio of the calibration set
    probe: Any = None
    probe_layer: int | None = None
    card: dict | None = None
    controller: ShareController | None = None  # holds the routed share on live traffic (config `controller`)

    def __post_init__(self) -> None:
        spec = method_spec(self.name)
        # The hidden-state pass a probe reads; one that reads the question alone decides before the SLM answers.
        self.hidden = hidden_spec(spec.hidden) if spec.needs_hidden else None
        self.decides_first = self.hidden is not None and not self.hidden.follows_greedy
        # Whether scoring an answer calls the SLM again (a follow-up pass, or the probe's hidden states).
        self.follow_up = self.probe is not None or any(name != "greedy" for name in spec.passes)

    def threshold_for(self, policy: Policy) -> float:
        """The threshold a request's policy asks for: its own, its ratio's, or the server's (the controller's when
        it holds the share)."""
        if policy.threshold is not None:
            return policy.threshold
        if policy.ratio is not None:
            return threshold_for_ratio(self.calibration, policy.ratio, self.calibration_path)
        return self.controller.threshold if self.controller is not None else self.threshold


@dataclass
class Decision:
    """The routing decision on one request, and what the SLM computed to reach it."""

    method: str
    confidence: float  # NaN when the method gave no score (such answers are always routed)
    threshold: float
    routed: bool
    reason: str  # confidence | over_context
    slm_reply: Completion | None
    budget: int
    usage: RequestUsage
    default_policy: bool = True  # the server's own ratio (the share /metrics and the controller follow)


@dataclass(frozen=True)
class RoutedAnswer:
    """What the router replies: the answering model's text, the routing record, tokens and costs."""

    text: str
    model: str
    finish_reason: str
    completion_tokens: int
    routed: bool
    fallback: bool
    confidence: float
    threshold: float
    method: str = ""
    reason: str = "confidence"
    usage: RequestUsage | None = None
    default_policy: bool = True


class Router:
    """Answers conversations: SLM first, LLM when the SLM's confidence is below the threshold."""

    def __init__(self, config: RouterConfig, slm: Engine, llm: LLMClient, methods: Sequence[ServedMethod],
                 metrics: RouterMetrics, prompts: PromptSet | None = None, long_slm: Engine | None = None) -> None:
        self.config = config
        self.methods = {served.name: served for served in methods}
        self.default_method = methods[0].name
        self.slm_name = config.slm.model
        self.llm_name = config.llm.model
        self.prompts = prompts or PromptSet.load()
        self.settings = config.generation.model_dump()  # what the passes' declarations read
        batching = config.batching
        self.batcher = EngineBatcher(slm, max_batch_size=batching.max_batch_size,
                                     max_wait=batching.max_wait_ms / 1000.0, on_batch=metrics.slm_batch)
        # Long requests (prompt or budget over the lane's limits) on a second engine of their own.
        self.long_lane = batching.long_lane if long_slm is not None else None
        self.long_batcher = (EngineBatcher(long_slm, max_batch_size=batching.max_batch_size,
                                           max_wait=batching.max_wait_ms / 1000.0, on_batch=metrics.slm_batch)
                             if long_slm is not None else None)
        # Token counts (context check, usage) on their own thread: a long prompt's tokenization never holds the
        # event loop, nor waits behind an engine call.
        self.counter = slm if isinstance(slm, CountsTokens) else None
        self._count_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokens")
        self.metrics = metrics
        self.llm = llm

    # The default method's attributes, as a one-method router had them.
    @property
    def method(self) -> str:
        return self.default_method

    @property
    def threshold(self) -> float:
        return self.methods[self.default_method].threshold_for(Policy(self.default_method))

    @classmethod
    def from_config(cls, config: RouterConfig) -> "Router":
        """Check the calibration files first (cheap), then load the models; metrics from the drift settings."""
        methods = [served_method(config, entry) for entry in config.served()]
        llm = LLMClient(config.llm)
        slm = build_slm_engine(config)
        # The long lane needs its own engine; an in-process hf SLM is cheap to load twice (vLLM schedules
        # long and short requests step by step itself, and an endpoint is its own affair).
        long_slm = build_slm_engine(config) if config.batching.long_lane and config.slm.kind == "hf" else None
        drift = config.drift
        metrics = RouterMetrics(config.ratio, window=drift.window, band=drift.band, min_requests=drift.min_requests)
        return cls(config, slm, llm, methods, metrics, long_slm=long_slm)

    # ------------------------------------------------------------------ the SLM's calls, counted

    async def prompt_lengths(self, conversations: Sequence[Conversation]) -> list[int] | None:
        """Tokens of each conversation's prompt for the SLM; None when its engine cannot count (an endpoint)."""
        if self.counter is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            self._count_pool, self.counter.prompt_lengths, list(conversations))

    def is_long(self, prompt_tokens: int, budget: int) -> bool:
        """Whether a request goes to the long lane."""
        lane = self.long_lane
        return lane is not None and (prompt_tokens > lane.prompt_tokens or budget > lane.max_new_tokens)

    async def _slm_call(self, call: str, conversation: Conversation, params: Any, usage: RequestUsage,
                        prompt_tokens: int | None = None):
        """One SLM call, its tokens added to ``usage`` (``prompt_tokens`` when the caller counted them already)."""
        batcher = self.long_batcher if usage.long else self.batcher
        # Counted while the engine works, not after it.
        counting = asyncio.ensure_future(self.prompt_lengths([conversation])) if prompt_tokens is None else None
        try:
            if call == "generate":
                result = await batcher.generate(conversation, params)
                written = sum(len(c.tokens) for c in result)
            elif call == "next_token_probs":
                result, written = await batcher.next_token_probs(conversation, params), 0
            else:
                result, written = await batcher.hidden_states(conversation, params), 0
        except BaseException:
            if counting is not None:
                counting.cancel()
            raise
        if counting is not None:
            lengths = await counting
            prompt_tokens = lengths[0] if lengths else 0
        usage.slm.add(prompt_tokens, written)
        return result

    # ------------------------------------------------------------------ confidence

    def item(self, messages: Conversation, task_type: str, choices: Sequence[str] | None) -> dict[str, Any]:
        """The request as a data-contract row: what the grading and prompt helpers read."""
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        return {"id": _REQUEST_ID, "dataset": "request", "task_type": task_type, "question": question,
                "context": None, "choices": list(choices) if choices else None}

    def budget(self, task_type: str, max_tokens: int | None) -> int:
        """The SLM's token budget: the study's for the task type, or the request's ``max_tokens``."""
        return int(max_tokens) if max_tokens else int(self.settings["max_new_tokens"][task_type])

    async def slm_answer(self, messages: Conversation, item: Mapping[str, Any], max_tokens: int | None,
                         usage: RequestUsage, prompt_tokens: int | None = None) -> tuple[Completion, int]:
        """The greedy pass's decoding on the user's messages (the request's ``max_tokens`` replaces the budget;
        ``prompt_tokens``: the messages' tokens, when already counted)."""
        decoding = PASSES["greedy"].decoding(self.settings, item["task_type"], self.prompts)
        decoding["max_new_tokens"] = self.budget(item["task_type"], max_tokens)
        sampling = Sampling(**decoding)
        (completion,) = await self._slm_call("generate", messages, sampling, usage, prompt_tokens)
        return completion, sampling.max_new_tokens

    async def confidence(self, served: ServedMethod, messages: Conversation, item: Mapping[str, Any],
                         answer: Completion, usage: RequestUsage) -> float:
        """The method's confidence in ``answer``, by the workflow's function; NaN when it gives none."""
        if served.probe is not None:
            return await self.probe_confidence(served, messages, item, answer, usage)
        greedy = pd.DataFrame(PASSES["greedy"].rows(_REQUEST_ID, item, [answer]))
        # The answer as the workflow's rule grading counts it (judge.weak_readings at its default).
        greedy["prediction"] = [counted_answer(read_item_reply(answer.text, item), default_weak_readings())]
        # Correctness is unknown when serving; the methods carry it through, none reads it to score.
        greedy["correct"] = False
        # The passes the method declares (uqroute.uq.registry), each as the workflow's pass makes it.
        passes = {"greedy": greedy}
        for pass_name in method_spec(served.name).passes:
            if pass_name not in passes:
                passes[pass_name] = await self._pass(pass_name, messages, item, answer, usage)
        scored = score_method(served.name, passes, pd.DataFrame([item]))
        return float(scored["confidence"].iloc[0])

    async def probe_confidence(self, served: ServedMethod, messages: Conversation, item: Mapping[str, Any],
                               answer: Completion | None, usage: RequestUsage) -> float:
        """The probe's confidence: the workflow's hidden-state pass of the method on the user's messages (closed
        by the SLM's answer where the pass quotes it; none exists yet for a probe of the question alone)."""
        conversation = served.hidden.prompt(self.prompts, item, None if answer is None else answer.text, messages)
        vector = await self._slm_call("hidden_states", conversation, int(served.probe_layer), usage)
        return float(served.probe(np.asarray([vector], dtype=np.float32))[0])

    async def _pass(self, pass_name: str, messages: Conversation, item: Mapping[str, Any],
                    answer: Completion, usage: RequestUsage) -> pd.DataFrame:
        """One follow-up pass of the workflow for this request (its declaration in uqroute.passes.PASSES: prompt,
        decoding, rows), on the user's messages instead of the answer prompt."""
        spec = PASSES[pass_name]
        conversation = spec.conversation(self.prompts, item, answer.text, self.settings, opening=messages)
        decoding = spec.decoding(self.settings, item["task_type"], self.prompts)
        if spec.generates:
            output = await self._slm_call("generate", conversation, Sampling(**decoding), usage)
        else:
            output = await self._slm_call("next_token_probs", conversation, tuple(decoding["candidates"]), usage)
        return pd.DataFrame(spec.rows(_REQUEST_ID, item, output))

    # ------------------------------------------------------------------ the decision

    async def decide(self, messages: Conversation, *, task_type: str, choices: Sequence[str] | None = None,
                     max_tokens: int | None = None, policy: Policy | None = None) -> Decision:
        """Route one conversation (the SLM's answer is made unless the method decides first and routes);
        :class:`ContextTooLong` for a prompt the SLM cannot read when the limits say reject, :class:`UpstreamError`
        when the SLM fails."""
        policy = policy or Policy(self.default_method)
        served = self.methods[policy.method]
        item = self.item(messages, task_type, choices)
        usage = RequestUsage()
        budget = self.budget(task_type, max_tokens)
        with contextlib.ExitStack() as lane:
            # Announced before the count, so a burst's first engine call waits for this request's job.
            lane.enter_context(self.batcher.expecting())
            try:
                lengths = await self.prompt_lengths([messages])
                counted = lengths[0] if lengths is not None else None
                if counted is not None:
                    usage.request_prompt_tokens = counted
                    usage.long = self.is_long(counted, budget)
                    window = self.counter.context_window
                    if counted + budget > window:
                        if self.config.limits.over_context == "reject":
                            raise ContextTooLong(self.slm_name, counted, budget, window)
                        return Decision(served.name, math.nan, served.threshold_for(policy), True, "over_context",
                                        None, budget, usage, policy.is_default)
                    if usage.long:
                        lane.close()
                        lane.enter_context(self.long_batcher.expecting())
                slm_reply = None
                # A probe of the question alone: a routed request never reaches the decoder.
                if served.decides_first:
                    confidence = await self.probe_confidence(served, messages, item, None, usage)
                else:
                    slm_reply, budget = await self.slm_answer(messages, item, max_tokens, usage, counted)
                    if not served.follow_up:  # no more SLM calls: the batcher need not wait for this request
                        lane.close()
                    confidence = await self.confidence(served, messages, item, slm_reply, usage)
                threshold = served.threshold_for(policy)
                if policy.is_default and served.controller is not None:
                    routed = served.controller.route(confidence)  # decides at its threshold, then moves it
                else:
                    # The study's rule: keep the answer when confidence >= threshold; no confidence: route.
                    routed = not confidence >= threshold
                if slm_reply is None and not routed:
                    slm_reply, budget = await self.slm_answer(messages, item, max_tokens, usage, counted)
            except (EngineError, OSError) as err:
                raise UpstreamError(f"SLM {self.slm_name} failed: {err}") from err
        return Decision(served.name, confidence, threshold, routed, "confidence", slm_reply, budget, usage,
                        policy.is_default)

    async def after_llm_failure(self, err: UpstreamError, decision: Decision, messages: Conversation,
                                **ask) -> RoutedAnswer:
        """A routed request whose LLM failed: the SLM's answer (``llm.on_failure: fallback``), or the error again."""
        if self.config.llm.on_failure == "error":
            raise err
        self.metrics.llm_failures.inc()
        log.warning("LLM %s failed, answering with the SLM (fallback): %s", self.llm_name, err)
        await self.slm_fallback(decision, messages, **ask)
        return self.slm_routed_answer(decision, fallback=True)

    async def slm_fallback(self, decision: Decision, messages: Conversation, *, task_type: str,
                           choices: Sequence[str] | None, max_tokens: int | None) -> Completion:
        """The SLM's answer for a routed request whose LLM failed (made now if the decision came first)."""
        if decision.slm_reply is None:
            if decision.reason == "over_context":
                raise UpstreamError(f"LLM {self.llm_name} failed, and the prompt is too long for the SLM")
            try:
                counted = decision.usage.request_prompt_tokens if self.counter is not None else None
                decision.slm_reply, decision.budget = await self.slm_answer(
                    messages, self.item(messages, task_type, choices), max_tokens, decision.usage, counted)
            except (EngineError, OSError) as err:
                raise UpstreamError(f"SLM {self.slm_name} failed: {err}") from err
        return decision.slm_reply

    def llm_budget(self, max_tokens: int | None) -> int:
        return int(max_tokens or self.config.llm.max_tokens)

    # ------------------------------------------------------------------ a whole answer

    async def answer(self, messages: Conversation, *, task_type: str, choices: Sequence[str] | None = None,
                     max_tokens: int | None = None, temperature: float | None = None,
                     policy: Policy | None = None) -> RoutedAnswer:
        """Route one conversation and answer it; :class:`UpstreamError` when no model could answer."""
        decision = await self.decide(messages, task_type=task_type, choices=choices, max_tokens=max_tokens,
                                     policy=policy)
        if not decision.routed:
            return self.slm_routed_answer(decision, fallback=False)
        try:
            reply = await self.llm.complete(messages, max_tokens=self.llm_budget(max_tokens),
                                            temperature=temperature or 0.0)
        except UpstreamError as err:
            return await self.after_llm_failure(err, decision, messages, task_type=task_type, choices=choices,
                                                max_tokens=max_tokens)
        decision.usage.llm.add(reply.prompt_tokens, reply.completion_tokens)
        return self.llm_routed_answer(decision, reply.text, reply.finish_reason, reply.completion_tokens)

    def llm_routed_answer(self, decision: Decision, text: str = "", finish_reason: str = "",
                          completion_tokens: int = 0) -> RoutedAnswer:
        """The LLM's answer to a routed request (a stream's text, finish reason and length are known at its end)."""
        return RoutedAnswer(text, self.llm_name, finish_reason, completion_tokens, True, False, decision.confidence,
                            decision.threshold, decision.method, decision.reason, decision.usage,
                            decision.default_policy)

    def slm_routed_answer(self, decision: Decision, *, fallback: bool) -> RoutedAnswer:
        reply = decision.slm_reply
        return RoutedAnswer(reply.text, self.slm_name, _finish_reason(reply, decision.budget), len(reply.tokens),
                            decision.routed, fallback, decision.confidence, decision.threshold, decision.method,
                            decision.reason, decision.usage, decision.default_policy)

    def costs(self, answer: RoutedAnswer) -> dict:
        """The answer's cost, its LLM-alone cost and the savings (USD), by the configured prices."""
        return answer.usage.costs(self.config.slm.price, self.config.llm.price,
                                  answered_by_llm=answer.model == self.llm_name,
                                  reply_tokens=answer.completion_tokens)

    def card_state(self, method: str) -> dict:
        """What ``GET /v1/uqroute/card`` shows: the method's router card (None if it has none), the threshold
        and ratio in force, and the controller's live state."""
        served = self.methods[method]
        threshold = served.threshold_for(Policy(method))
        return {"method": method, "ratio": self.config.ratio,
                "threshold": threshold if math.isfinite(threshold) else None,
                "calibration": served.calibration_path,
                # What the card expects at the served ratio (its nearest target ratio), then the whole card.
                "expected": card_for_ratio(served.card, self.config.ratio) if served.card else None,
                "card": served.card,
                "controller": served.controller.state() if served.controller is not None else None}

    async def aclose(self) -> None:
        await self.llm.close()

    def close(self, timeout: float | None = None) -> None:
        """Stop the SLM's worker (waiting at most ``timeout`` s for an engine call in progress)."""
        self._count_pool.shutdown(wait=False, cancel_futures=True)
        self.batcher.close(timeout)
        if self.long_batcher is not None:
            self.long_batcher.close(timeout)


def served_method(config: RouterConfig, entry) -> ServedMethod:
    """One served method from its config entry: its calibration file checked and read, its probe loaded."""
    check_calibration_file(entry.calibration, config.slm.model, entry.method)
    confidences = calibration_confidences(entry.calibration, config.calibration_run)
    threshold = threshold_for_ratio(confidences, config.ratio, f"{entry.calibration}: run {config.calibration_run}")
    probe, layer = load_served_probe(config.slm.model, entry.method, entry.probe) if entry.probe else (None, None)
    log.info("%s: threshold %.6g routes %.3f of calibration run %d of %s", entry.method, threshold, config.ratio,
             config.calibration_run, entry.calibration)
    controller = (ShareController(config.ratio, threshold, confidences, config.controller.settings())
                  if config.controller is not None else None)
    return ServedMethod(entry.method, entry.calibration, confidences, threshold, probe, layer,
                        card=served_card(config, entry), controller=controller)


def served_card(config: RouterConfig, entry) -> dict | None:
    """The method's router card, checked against its calibration file (a card of another file refuses to start);
    None when there is none (``card: auto`` and no card beside the calibration file, or ``card: null``)."""
    setting = config.card if entry.method == config.method else "auto"
    if setting is None:
        return None
    path = card_path_for(entry.calibration) if setting == "auto" else Path(setting)
    if setting == "auto" and not path.is_file():
        log.info("%s: no router card beside %s", entry.method, entry.calibration)
        return None
    card = load_card(path, entry.calibration, config.slm.model, entry.method)
    log.info("%s: router card %s matches %s", entry.method, path, entry.calibration)
    return card
