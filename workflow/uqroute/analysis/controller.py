"""Keeping the routed share on target without labels: a quantile tracker on the routing threshold, and its replay.

A calibration threshold routes the target share of the *calibration* confidences; live traffic whose
confidences sit higher or lower routes another share. :class:`ShareController` moves the threshold after every
request from what it routed alone (no label): a Robbins-Monro quantile tracker, run in the calibration set's
quantile space. Its state is a *level* u, a share of the calibration confidences, and the threshold is the
calibration confidence at that share (:class:`CalibrationScale`); each request moves the level by

    u <- u + step * (ratio - routed),    routed in {0, 1},

so routing too often lowers the threshold and too seldom raises it, and the level rests where the live share is
``ratio``. Why the level and not the threshold: one ``step`` means the same in every method's units
(probabilities, negative log-perplexities, verbalized percentages) and moves the threshold least where the
confidences are dense, where a move changes the share most (a Newton step with the calibration density as the
slope). The step never exceeds ``step * max(ratio, 1 - ratio)`` calibration quantiles. A constant step makes the
tracker an integral controller on the count: after n requests the routed share is off target by exactly
``|u_n - u_0| / (step n)`` (while the level stays within ``reach``), so it closes on the target as 1/n once the
level has found its place. No warm-up: the calibration threshold is the best start there is, and a warm-up would
only let the share drift for its length before the first correction.

Past the calibration set's ends the threshold goes on in a straight line, one calibration range (max - min) per
unit of level, at most ``reach`` units out: traffic above every calibration confidence can still be routed, and a
stream of unscored replies cannot wind the level up without end.

Ratio 0 and 1 route nothing and everything on any data (thresholds -inf and +inf): the controller holds them.
A request without a confidence (NaN) is routed, as the router does, and counts toward the share. A confidence
equal to the threshold is kept (``confidence >= threshold``), as the calibration rule keeps it.

:func:`replay_table` measures the controller on a held-out dataset against the static calibration threshold
(``share-control/{slm}/{llm}/{method}/{dataset}.parquet``). This module knows nothing of Snakemake or HTTP: the
router (``uqroute serve``) imports it.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from .bootstrap import cell_seed, interval, resample_weights
from .calibration import routing_target, thresholds_for_ratios
from .routing import check_ratios

ROUTERS = ("static", "controller")
SHARE_CONTROL_COLUMNS = (
    "run", "target_ratio", "threshold", "router", "checkpoint", "requests", "n", "orders",
    "achieved_ratio", "achieved_ratio_low", "achieved_ratio_high",
    "abs_error", "abs_error_low", "abs_error_high",
    "accuracy", "accuracy_low", "accuracy_high",
)
END = "end"


@dataclass(frozen=True)
class ControllerSettings:
    """How the threshold moves (config ``analysis.controller``; the router's defaults are these).

    ``window``: the last requests over which :meth:`ShareController.state` reports the routed share (a live view;
    the control itself needs no window). ``step``: calibration quantiles the level moves per request, times
    ``ratio - routed``: larger closes a shift faster and lets the threshold wander more around its place.
    ``reach``: how far past the calibration set's ends the level may go, in calibration ranges."""

    window: int = 200
    step: float = 0.05
    reach: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.window, int) and self.window >= 1):
            raise ValueError(f"analysis.controller.window must be an integer >= 1; got {self.window!r}")
        if not 0 < self.step <= 1:
            raise ValueError(f"analysis.controller.step must be in (0, 1]; got {self.step!r}")
        if not 0 <= self.reach < math.inf:
            raise ValueError(f"analysis.controller.reach must be finite and >= 0; got {self.reach!r}")

    @classmethod
    def from_config(cls, settings) -> "ControllerSettings":
        """The controller's keys of a config section (``analysis.controller``); the replay's keys are left out."""
        settings = dict(settings or {})
        return cls(**{field.name: settings[field.name] for field in fields(cls) if field.name in settings})


class CalibrationScale:
    """Levels (shares of the calibration confidences) to thresholds and back, scale-free across methods.

    With the m calibration confidences sorted c_1 <= ... <= c_m, level k/m maps to (c_k + c_{k+1}) / 2
    (k = 1..m-1), the threshold :func:`~uqroute.analysis.calibration.thresholds_for_ratios` gives ratio k/m, and
    linearly between; past both ends the line goes on with slope c_m - c_1 (1 where all are equal, a set with no
    spread to scale by)."""

    def __init__(self, calibration_confidences) -> None:
        conf = np.sort(np.asarray(calibration_confidences, dtype=float))
        if len(conf) == 0 or not np.all(np.isfinite(conf)):
            raise ValueError(f"a controller needs finite calibration confidences; got {len(conf)} values "
                             f"({int((~np.isfinite(conf)).sum())} not finite)")
        m = len(conf)
        self.sorted = conf
        spread = float(conf[-1] - conf[0])
        self.slope = spread if spread > 0 else 1.0
        if m == 1:
            self.levels, self.thresholds = [0.5], [float(conf[0])]
        else:
            self.levels = (np.arange(1, m) / m).tolist()
            self.thresholds = ((conf[:-1] + conf[1:]) / 2).tolist()

    def threshold(self, level: float) -> float:
        """The threshold at ``level`` (a float; plain Python, as it runs once a request)."""
        levels, thresholds = self.levels, self.thresholds
        if level <= levels[0]:
            return thresholds[0] - (levels[0] - level) * self.slope
        if level >= levels[-1]:
            return thresholds[-1] + (level - levels[-1]) * self.slope
        i = bisect.bisect_right(levels, level)
        left, right = levels[i - 1], levels[i]
        return thresholds[i - 1] + (level - left) / (right - left) * (thresholds[i] - thresholds[i - 1])

    def level(self, threshold: float, ratio: float) -> float:
        """The level a threshold sits at: the share of calibration confidences it routes (below it), and where it
        falls on tied ones, the nearest share to ``ratio`` among those the ties allow."""
        below = np.searchsorted(self.sorted, threshold, side="left") / len(self.sorted)
        upto = np.searchsorted(self.sorted, threshold, side="right") / len(self.sorted)
        return float(min(max(ratio, below), upto))


class ShareController:
    """A routing threshold that keeps the routed share at ``target_ratio`` without labels (module docstring).

    Starts at ``initial_threshold`` (the calibration threshold of ``target_ratio``); ``calibration_confidences``
    are the calibration run's confidences it came from, which set the scale of the steps. Thread-safe: every
    :meth:`route` decides and updates under one lock, so concurrent requests each count once."""

    def __init__(self, target_ratio: float, initial_threshold: float, calibration_confidences: np.ndarray,
                 settings: ControllerSettings = ControllerSettings()) -> None:
        ratio = float(check_ratios([target_ratio], what="target ratio")[0])
        initial = float(initial_threshold)
        if math.isnan(initial):
            raise ValueError("initial threshold is NaN; a threshold is a confidence or -inf/+inf")
        held = {0.0: -math.inf, 1.0: math.inf}.get(ratio)
        if held is not None and initial != held:
            raise ValueError(f"target ratio {ratio:g} routes {'nothing' if ratio == 0 else 'everything'} on any data: "
                             f"its threshold is {held}, not {initial}")
        self.target_ratio = ratio
        self.initial_threshold = initial
        self.settings = settings
        self._scale = CalibrationScale(calibration_confidences)
        self._holds = held is not None
        self._bounds = (-settings.reach, 1.0 + settings.reach)
        self._level = min(max(self._scale.level(initial, ratio), self._bounds[0]), self._bounds[1])
        self._threshold = initial
        self._seen = self._routed = 0
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._last_step = self._largest_step = 0.0
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        """The threshold the next request is routed by."""
        return self._threshold

    def route(self, confidence: float | None) -> bool:
        """Whether to route a request of ``confidence`` (None or NaN: routed), decided by the current threshold;
        then the threshold moves by what was decided."""
        confidence = math.nan if confidence is None else float(confidence)
        with self._lock:
            routed = not confidence >= self._threshold
            self._seen += 1
            self._routed += routed
            self._recent.append(routed)
            if not self._holds:
                low, high = self._bounds
                level = min(max(self._level + self.settings.step * (self.target_ratio - routed), low), high)
                self._last_step = level - self._level
                self._largest_step = max(self._largest_step, abs(self._last_step))
                self._level = level
                self._threshold = self._scale.threshold(level)
            return routed

    def state(self) -> dict:
        """The live state, JSON-able: ``threshold`` (null where infinite; ``threshold_infinite`` then says
        ``+inf`` or ``-inf``), ``initial_threshold``, ``target_ratio``, ``level`` (calibration quantiles),
        ``requests`` and ``routed`` so far and their ``routed_share``, the last ``window_requests`` (at most
        ``window``) and their ``window_routed_share``, the ``last_step`` and ``largest_step`` of the level (bound:
        ``step`` times the larger of ratio and 1 - ratio), and whether it ``holds`` its threshold (ratio 0 or 1)."""
        with self._lock:
            recent = len(self._recent)
            return {
                "threshold": _finite_or_none(self._threshold),
                "threshold_infinite": _infinity_sign(self._threshold),
                "initial_threshold": _finite_or_none(self.initial_threshold),
                "target_ratio": self.target_ratio,
                "level": self._level,
                "requests": self._seen,
                "routed": self._routed,
                "routed_share": self._routed / self._seen if self._seen else None,
                "window": self.settings.window,
                "window_requests": recent,
                "window_routed_share": sum(self._recent) / recent if recent else None,
                "last_step": self._last_step,
                "largest_step": self._largest_step,
                "step": self.settings.step,
                "holds": self._holds,
            }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _infinity_sign(value: float) -> str | None:
    return None if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


def replay(confidences: np.ndarray, target_ratio: float, initial_threshold: float, calibration_confidences,
           settings: ControllerSettings = ControllerSettings()) -> np.ndarray:
    """Routed flags (n,) of ``confidences`` in order, through a fresh :class:`ShareController`."""
    controller = ShareController(target_ratio, initial_threshold, calibration_confidences, settings)
    values = np.asarray(confidences, dtype=float)
    return np.fromiter((controller.route(value) for value in values.tolist()), dtype=bool, count=len(values))


# ---- the replay on a held-out dataset -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySettings:
    """How the held-out dataset is replayed (config ``analysis.controller``): ``orders`` streams, each a bootstrap
    resample of its questions in a random order, repeated in new orders until it holds the largest checkpoint;
    ``checkpoints``: request counts to measure at (and the stream's end); ``seed``; ``ratios``: the target ratios
    (None: the generalization grid)."""

    orders: int = 50
    seed: int = 50
    checkpoints: tuple[int, ...] = (50, 100)
    ratios: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.orders < 2:
            raise ValueError(f"analysis.controller.orders must be >= 2 (an interval needs several); got {self.orders}")
        if not self.checkpoints or min(self.checkpoints) < 1:
            raise ValueError(f"analysis.controller.checkpoints must be request counts >= 1; got {self.checkpoints}")

    @classmethod
    def from_config(cls, settings) -> "ReplaySettings":
        settings = dict(settings or {})
        ratios = settings.get("ratios")
        return cls(orders=settings.get("orders", cls.orders), seed=settings.get("seed", cls.seed),
                   checkpoints=tuple(sorted(set(settings.get("checkpoints", cls.checkpoints)))),
                   ratios=None if ratios is None else tuple(ratios))


def replay_streams(n: int, settings: ReplaySettings, cell: Sequence[str]) -> np.ndarray:
    """``(orders, length)`` row indices of the streams replayed over a dataset of ``n`` questions: order b is the
    b-th bootstrap resample of the questions (:func:`~uqroute.analysis.bootstrap.resample_weights`, seeded by
    the seed and ``cell``), shuffled, repeated in a new shuffle until the stream holds the largest checkpoint.
    Every method and LLM of a cell (``cell``: its SLM and dataset) replays the same streams where they keep the
    same rows."""
    seed = cell_seed(settings.seed, *cell)
    drawn = resample_weights(n, settings.orders, seed).astype(np.int64)
    passes = max(1, -(-max(settings.checkpoints) // n))
    rng = np.random.default_rng([seed, 1])
    streams = np.empty((settings.orders, passes * n), dtype=np.int64)
    for b in range(settings.orders):
        questions = np.repeat(np.arange(n), drawn[b])
        streams[b] = np.concatenate([rng.permutation(questions) for _ in range(passes)])
    return streams


def _checkpoint_rows(routed: np.ndarray, right: np.ndarray, ratio: float, checkpoints: Sequence[int],
                     level: float) -> list[dict]:
    """Per checkpoint (and the end): routed share, its distance to ``ratio`` and accuracy over the first requests
    of each stream (rows of ``routed``/``right``), mean and ``level`` interval over the streams."""
    length = routed.shape[1]
    rows = []
    for name, requests in [*((str(c), c) for c in checkpoints), (END, length)]:
        share = routed[:, :requests].mean(axis=1)
        error = np.abs(share - ratio)
        accuracy = right[:, :requests].mean(axis=1)
        row = {"checkpoint": name, "requests": requests}
        for column, values in (("achieved_ratio", share), ("abs_error", error), ("accuracy", accuracy)):
            low, high = interval(values, level)
            row |= {column: float(values.mean()), f"{column}_low": float(low), f"{column}_high": float(high)}
        rows.append(row)
    return rows


def _no_share_control_rows() -> pd.DataFrame:
    integers = {"run", "requests", "n", "orders"}
    text = {"router", "checkpoint"}
    return pd.DataFrame({column: pd.Series(dtype="int64" if column in integers else "str" if column in text
                                           else "float64") for column in SHARE_CONTROL_COLUMNS})


def replay_table(calibration: pd.DataFrame, target_uq: pd.DataFrame, llm_correct, target_ratios, *,
                 cell: Sequence[str], invalid: str = "drop", controller: ControllerSettings = ControllerSettings(),
                 replay_settings: ReplaySettings = ReplaySettings(), level: float = 0.95) -> pd.DataFrame:
    """The static calibration threshold against the controller on a held-out dataset.

    ``calibration``: the hold-out calibration set (``run, confidence``); ``target_uq`` and ``llm_correct`` as for
    :func:`~uqroute.analysis.calibration.generalization`, whose rows and rule for invalid rows this takes
    (:func:`~uqroute.analysis.calibration.routing_target`); ``cell``: (SLM, dataset), which seeds the streams
    (:func:`replay_streams`). For each calibration run and target ratio, every stream is routed by the run's
    threshold for the ratio held fixed (``static``, the router's rule: routed unless confidence >= threshold)
    and by a fresh :class:`ShareController` started there (``controller``). At each checkpoint and at the end of
    the stream: the routed share, its distance to the target and the accuracy (the SLM's answer kept, the LLM's
    when routed), each the mean over the streams with its ``level`` percentile interval over them.
    ``replay_settings.ratios`` (when set) replaces ``target_ratios``.
    """
    conf, slm, llm, _, _ = routing_target(target_uq, llm_correct, invalid)
    ratios = check_ratios(target_ratios if replay_settings.ratios is None else replay_settings.ratios,
                          what="target ratios")
    if len(conf) == 0 or len(calibration) == 0:
        return _no_share_control_rows()
    streams = replay_streams(len(conf), replay_settings, cell)
    stream_conf, stream_slm, stream_llm = conf[streams], slm[streams], llm[streams]
    rows = []
    for run, run_rows in calibration.groupby("run", sort=True):
        run_conf = run_rows["confidence"].to_numpy(dtype=float)
        for ratio, threshold in zip(ratios, thresholds_for_ratios(run_conf, ratios)):
            static = ~(stream_conf >= threshold)
            controlled = np.stack([replay(order, ratio, threshold, run_conf, controller) for order in stream_conf])
            for router, routed in zip(ROUTERS, (static, controlled)):
                right = np.where(routed, stream_llm, stream_slm)
                for row in _checkpoint_rows(routed, right, ratio, replay_settings.checkpoints, level):
                    rows.append({"run": int(run), "target_ratio": float(ratio), "threshold": float(threshold),
                                 "router": router, "n": len(conf), "orders": replay_settings.orders, **row})
    return pd.DataFrame(rows)[list(SHARE_CONTROL_COLUMNS)]
