"""Prometheus metrics of a router and the drift of its routed share.

The calibration set promises a routed share; traffic unlike the calibration data routes more
or less than that (RouteLLM's users report such drift). The router therefore tracks the
share of its last ``window`` answers that went to the LLM, exports it beside the target, and
logs a warning when it leaves ``target ± band`` (once per excursion, and once when it is back).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("uqroute.serve")

# Paths a request can take: answered by the SLM, by the LLM, by the SLM after the LLM failed, or not at all
# (a failure, its client gone before the answer, its deadline passed).
PATHS = ("slm", "llm", "fallback", "error", "cancelled", "timeout")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class RouterMetrics:
    """Counters, latency histograms and the sliding-window routed share, in their own registry."""

    def __init__(self, target_ratio: float, *, window: int, band: float, min_requests: int) -> None:
        self.registry = CollectorRegistry()
        self.target_ratio = float(target_ratio)
        self.band = float(band)
        self.min_requests = int(min_requests)
        self._window: deque[bool] = deque(maxlen=int(window))
        self._lock = threading.Lock()
        self._alerting = False
        self._savings = 0.0
        self.requests = Counter("uqroute_requests", "Chat requests answered, by path", ["path"],
                                registry=self.registry)
        self.latency = Histogram("uqroute_request_seconds", "Time to answer a chat request, by path", ["path"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.llm_failures = Counter("uqroute_llm_failures", "Routed requests the LLM did not answer after retries",
                                    registry=self.registry)
        self.rejected = Counter("uqroute_rejected_requests", "Requests refused before routing, by HTTP status",
                                ["status"], registry=self.registry)
        self.slm_batch_size = Histogram("uqroute_slm_batch_size", "Conversations per SLM engine call",
                                        buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        # What the SLM computed: answers (generate), candidate probabilities (p(True)), hidden states (probes).
        self.slm_conversations = Counter("uqroute_slm_engine_calls", "Conversations the SLM engine ran, by call",
                                         ["call"], registry=self.registry)
        self.routed_share = Gauge("uqroute_routed_share", "Share of the last window's answers routed to the LLM",
                                  registry=self.registry)
        self.window_size = Gauge("uqroute_routed_share_window", "Answers in the routed-share window",
                                 registry=self.registry)
        Gauge("uqroute_target_ratio", "Routed share the calibration threshold was set for",
              registry=self.registry).set(self.target_ratio)
        Gauge("uqroute_drift_band", "Allowed distance of the routed share from the target",
              registry=self.registry).set(self.band)
        self.drift_alert = Gauge("uqroute_drift_alert", "1 while the routed share is outside target ± band",
                                 registry=self.registry)
        # Tokens and costs: what each model read and wrote (the routing's own SLM passes included), what that
        # cost by the configured prices, and what sending everything to the LLM would have cost.
        self.tokens = Counter("uqroute_tokens", "Tokens read (prompt) and written (completion), by model",
                              ["model", "kind"], registry=self.registry)
        self.cost = Counter("uqroute_cost_usd", "Cost of the answers, by model (configured prices)", ["model"],
                            registry=self.registry)
        self.llm_only_cost = Counter("uqroute_llm_only_cost_usd", "Cost had every request gone to the LLM "
                                     "(an estimate for answers the SLM kept)", registry=self.registry)
        self.savings = Gauge("uqroute_savings_usd", "LLM-only cost minus the cost paid, since start",
                             registry=self.registry)
        for path in PATHS:  # every series exists from the start, so dashboards see zeros, not gaps
            self.requests.labels(path)
            self.latency.labels(path)

    def slm_batch(self, call: str, size: int) -> None:
        """One SLM engine call of ``size`` conversations."""
        self.slm_batch_size.observe(size)
        self.slm_conversations.labels(call).inc(size)

    def observe(self, path: str, seconds: float, routed: bool | None) -> None:
        """One answered request; ``routed`` None (no routing decision, e.g. the SLM failed) leaves the window."""
        self.requests.labels(path).inc()
        self.latency.labels(path).observe(seconds)
        if routed is None:
            return
        with self._lock:
            self._window.append(bool(routed))
            share = sum(self._window) / len(self._window)
            count = len(self._window)
            self.routed_share.set(share)
            self.window_size.set(count)
            if count < self.min_requests:
                return
            outside = abs(share - self.target_ratio) > self.band
            if outside and not self._alerting:
                log.warning("routing drift: %.3f of the last %d requests went to the LLM, outside the target "
                            "%.3f ± %.3f set by the calibration data", share, count, self.target_ratio, self.band)
            elif self._alerting and not outside:
                log.warning("routing drift over: routed share %.3f of the last %d requests is back within "
                            "%.3f ± %.3f", share, count, self.target_ratio, self.band)
            self._alerting = outside
            self.drift_alert.set(1 if outside else 0)

    def account(self, usage, costs: dict, slm: str, llm: str, slm_price, llm_price) -> None:
        """One answered request's tokens and costs."""
        for model, count, price in ((slm, usage.slm, slm_price), (llm, usage.llm, llm_price)):
            self.tokens.labels(model, "prompt").inc(count.prompt_tokens)
            self.tokens.labels(model, "completion").inc(count.completion_tokens)
            self.cost.labels(model).inc(count.cost(price))
        self.llm_only_cost.inc(costs["llm_only_cost_usd"])
        with self._lock:
            self._savings += costs["savings_usd"]
            self.savings.set(self._savings)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
