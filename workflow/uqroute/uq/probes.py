"""Hidden-state probes: an MLP that predicts from layer -8 whether the SLM's greedy answer is correct.

Trained probe (Azaria & Mitchell, 2023; Kadavath et al., 2022; Mahaut et al., 2024): learned on the
dataset's own train split (or cross-fitted over the test split where the registry says the train
split is missing or unlike test). OOD probe: same network, learned on the train splits of all the
other datasets. In both cases

    confidence(x) = sigmoid(f(h(x)))

where h(x) is the hidden state of the eighth-to-last transformer layer at the last token of
prompt + greedy reply, standardized with the training mean and standard deviation, and f is a
four-layer MLP d -> 256 -> 128 -> 64 -> 1 with LeakyReLU activations, trained for 20 epochs with
Adam on the binary cross-entropy of the logits against "the greedy answer was correct"
(learning rate 5e-4 for the trained probe, 1e-4 for the OOD probe; batch size 32).

Labels all of one class still train (the loss is defined): the output bias is then pushed toward
that class, so every item gets nearly the same confidence (above 0.5 when all training answers were
correct, below when all were wrong) and the scores carry almost no ranking information.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .tables import method_frame, question_ids, rows_by_id

log = logging.getLogger(__name__)

TRAINED_LR = 5e-4
OOD_LR = 1e-4

TablePair = tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class ProbeSettings:
    """Training hyperparameters; optimizer Adam and loss BCEWithLogits are fixed (the paper's)."""

    hidden_sizes: tuple[int, ...] = (256, 128, 64)
    epochs: int = 20
    lr: float = TRAINED_LR
    batch_size: int = 32
    seed: int = 50
    weight_decay: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, ood: bool = False) -> "ProbeSettings":
        """From the config's ``probe`` section: ``lr`` for the trained probe, ``ood_lr`` for the OOD probe.

        ``crossfit_folds`` belongs to the caller; any other unknown key is an error naming it.
        """
        known = {f.name for f in fields(cls)} | {"ood_lr", "crossfit_folds"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"config key probe: unknown setting(s) {unknown}; known {sorted(known)}")
        values = {k: v for k, v in config.items() if k in {f.name for f in fields(cls)}}
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(int(size) for size in values["hidden_sizes"])
        values["lr"] = float(config.get("ood_lr", OOD_LR) if ood else config.get("lr", TRAINED_LR))
        return cls(**values)


class Standardize(nn.Module):
    """(x - mean) / scale with the training statistics kept as buffers, so the probe takes raw features."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def build_probe(n_features: int, hidden_sizes: Sequence[int], mean: np.ndarray, scale: np.ndarray) -> nn.Sequential:
    """Standardize, then len(hidden_sizes) + 1 linear layers with LeakyReLU between them; outputs logits (n, 1)."""
    layers: list[nn.Module] = [Standardize(mean, scale)]
    width = n_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.LeakyReLU()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _check_training_set(X: np.ndarray, y: np.ndarray, dataset: str | None) -> None:
    where = f"{dataset}: " if dataset else ""
    if X.ndim != 2:
        raise ValueError(f"{where}probe features must be a 2-D array (n, d), got shape {X.shape}")
    if len(X) != len(y):
        raise ValueError(f"{where}{len(X)} feature rows but {len(y)} labels")
    if len(X) < 2:
        raise ValueError(f"{where}a probe needs at least 2 training items, got {len(X)}")
    if not np.isfinite(X).all():
        raise ValueError(f"{where}probe training features contain NaN or infinite values")


def train_probe(X: np.ndarray, y: np.ndarray, settings: ProbeSettings = ProbeSettings(), *,
                dataset: str | None = None) -> nn.Module:
    """Fit the probe on features ``X`` float32 (n, d) and labels ``y`` bool (n,) (True = answer correct).

    Standardization statistics come from ``X`` (a constant feature is left unscaled). The same
    ``settings.seed`` gives the same weights: initialization and batch order draw from a seeded
    RNG that is forked, so the caller's global torch RNG is untouched. ``dataset`` only names the
    data in errors. Returns the model in eval mode; its output is a logit per row.
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=bool)
    _check_training_set(X, y, dataset)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    features = torch.from_numpy(X)
    targets = torch.from_numpy(y.astype(np.float32)).unsqueeze(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build_probe(X.shape[1], settings.hidden_sizes, mean, scale)
        order = torch.Generator().manual_seed(settings.seed)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, targets),
                                             batch_size=settings.batch_size, shuffle=True, generator=order)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        model.train()
        for _ in range(settings.epochs):
            for batch, labels in loader:
                optimizer.zero_grad()
                loss_fn(model(batch), labels).backward()
                optimizer.step()
    return model.eval()


def predict_correct_proba(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """P(answer correct) = sigmoid(logit) for features ``X`` (n, d); float64 (n,)."""
    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    return torch.sigmoid(logits).squeeze(1).double().numpy()


def hidden_features(hidden: pd.DataFrame, ids: pd.Index, name: str) -> np.ndarray:
    """Vectors of ``hidden`` (``id, layer, vector``) for ``ids`` in order: float32 (len(ids), d)."""
    rows = rows_by_id(hidden, ids, f"{name} hidden", ["layer", "vector"])
    layers = pd.unique(rows["layer"])
    if len(layers) > 1:
        raise ValueError(f"{name} hidden table mixes layers {sorted(layers.tolist())}; expected one")
    if len(rows) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    widths = {len(vector) for vector in rows["vector"]}
    if len(widths) > 1:
        raise ValueError(f"{name} hidden table: vectors of different lengths {sorted(widths)}")
    return np.stack([np.asarray(vector, dtype=np.float32) for vector in rows["vector"]])


def _labelled(hidden: pd.DataFrame, greedy: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Training features and labels for every question of a greedy table."""
    ids = question_ids(greedy, f"{name} greedy")
    labels = rows_by_id(greedy, ids, f"{name} greedy", ["correct"])["correct"].to_numpy(dtype=bool)
    return hidden_features(hidden, ids, name), labels


def _test_rows(test_hidden: pd.DataFrame, test_greedy: pd.DataFrame, questions: pd.DataFrame | None, name: str):
    ids = question_ids(test_greedy, f"{name} greedy") if questions is None else question_ids(questions)
    answers = rows_by_id(test_greedy, ids, f"{name} greedy", ["prediction", "correct"])
    return ids, answers, hidden_features(test_hidden, ids, name)


def probe_confidence(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """The probe's confidence for features ``X`` (n, d); NaN (invalid) for rows whose hidden state is not finite.

    The router scores a served answer with this function too."""
    finite = np.isfinite(X).all(axis=1)
    confidence = np.full(len(X), np.nan)
    if finite.any():
        confidence[finite] = predict_correct_proba(model, X[finite])
    return confidence


def trained_probe(test_hidden: pd.DataFrame, test_greedy: pd.DataFrame, train_hidden: pd.DataFrame,
                  train_greedy: pd.DataFrame, settings: ProbeSettings = ProbeSettings(), *,
                  dataset: str | None = None, questions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trained probe: learned on the dataset's train split, applied to its test split.

    confidence = sigmoid(f(standardize(h(x)))), f trained on (h, correct) of ``train_hidden`` /
    ``train_greedy`` (see the module docstring). Rows follow ``questions`` when given, else the
    test greedy table; prediction and correct come from ``test_greedy``. Returns
    ``id, confidence, prediction, correct, valid``.
    """
    name = dataset or "trained_probe"
    X_train, y_train = _labelled(train_hidden, train_greedy, f"{name} train")
    ids, answers, X_test = _test_rows(test_hidden, test_greedy, questions, f"{name} test")
    model = train_probe(X_train, y_train, settings, dataset=f"{name} train")
    return method_frame(ids, probe_confidence(model, X_test), answers["prediction"], answers["correct"])


def crossfit_assignment(correct: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each item: stratified by ``correct``, shuffled with ``seed``; int (n,).

    k = min(folds, n) so that a tiny test split still gets every item a fold. Stratifying needs k
    members of each class; where the rarer class has fewer (a small slice the SLM almost always
    gets wrong), the folds are plain shuffled ones instead.
    """
    # deferred: scikit-learn's model selection (~2 s), only cross-fitting needs it, not the router's released probes
    from sklearn.model_selection import KFold, StratifiedKFold

    correct = np.asarray(correct, dtype=bool)
    k = min(folds, len(correct))
    rarer_class = min(int(correct.sum()), int((~correct).sum()))
    splitter_type = StratifiedKFold if rarer_class >= k else KFold
    splitter = splitter_type(n_splits=k, shuffle=True, random_state=seed)
    assignment = np.empty(len(correct), dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(correct)), correct)):
        assignment[held_out] = fold
    return assignment


def crossfit_probe(test_hidden: pd.DataFrame, test_greedy: pd.DataFrame, settings: ProbeSettings = ProbeSettings(),
                   folds: int = 5, *, dataset: str | None = None,
                   questions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trained probe where the dataset has no usable train split (e.g. BoolQ): k-fold cross-fitting.

    The test items are split into ``folds`` stratified folds (``crossfit_assignment`` with
    ``settings.seed``); each item's confidence sigmoid(f_k(h(x))) comes from the probe f_k trained
    on the other folds, so no item is scored by a probe that saw it. Rows with a non-finite hidden
    state are invalid and are left out of training. Returns ``id, confidence, prediction,
    correct, valid``.
    """
    name = dataset or "crossfit_probe"
    ids, answers, X = _test_rows(test_hidden, test_greedy, questions, f"{name} test")
    y = answers["correct"].to_numpy(dtype=bool)
    finite = np.isfinite(X).all(axis=1)
    if finite.sum() < 2:
        raise ValueError(f"{name}: cross-fitting needs at least 2 test items with hidden states, got {finite.sum()}")
    assignment = np.full(len(ids), -1)
    assignment[finite] = crossfit_assignment(y[finite], folds, settings.seed)
    confidence = np.full(len(ids), np.nan)
    for fold in np.unique(assignment[finite]):
        held_out = assignment == fold
        model = train_probe(X[finite & ~held_out], y[finite & ~held_out], settings, dataset=f"{name} fold {fold}")
        confidence[held_out] = predict_correct_proba(model, X[held_out])
    return method_frame(ids, confidence, answers["prediction"], answers["correct"])


def ood_probe(test_hidden: pd.DataFrame, test_greedy: pd.DataFrame,
              others: Sequence[TablePair] | Mapping[str, TablePair], settings: ProbeSettings | None = None, *,
              dataset: str | None = None, questions: pd.DataFrame | None = None) -> pd.DataFrame:
    """OOD probe: learned on the pooled train splits of the *other* datasets, applied to this test split.

    confidence = sigmoid(f(standardize(h(x)))), f trained on the union of (h, correct) over
    ``others``: (hidden, greedy) train tables, as a list, or as a mapping dataset -> tables from
    which the entry named ``dataset`` (the target) is dropped. Standardization uses the pooled
    statistics. ``settings`` defaults to the OOD learning rate 1e-4. Returns
    ``id, confidence, prediction, correct, valid``.
    """
    settings = settings or ProbeSettings(lr=OOD_LR)
    name = dataset or "ood_probe"
    if isinstance(others, Mapping):
        pairs = [(source, pair) for source, pair in others.items() if source != dataset]
    else:
        pairs = [(f"{name} source {i}", pair) for i, pair in enumerate(others)]
    ids, answers, X_test = _test_rows(test_hidden, test_greedy, questions, f"{name} test")
    model = fit_pooled_probe(pairs, settings, name=f"{name} (other datasets)")
    return method_frame(ids, probe_confidence(model, X_test), answers["prediction"], answers["correct"])


def score_trained_probe(*, questions: pd.DataFrame, greedy: pd.DataFrame, hidden: pd.DataFrame,
                        training: Mapping[str, TablePair], probe: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """The trained probe of ``dataset`` as the registry calls it: learned on ``training[dataset]`` (its own
    train split's hidden states and graded greedy answers), or cross-fitted over the test split where none
    is given (``probe.crossfit_folds`` folds). ``probe``: the config's probe settings."""
    if set(training) - {dataset}:
        raise ValueError(f"trained probe of {dataset}: train splits of {sorted(training)} given; it learns from "
                         f"{dataset}'s own train split only")
    settings = ProbeSettings.from_config(probe, ood=False)
    common = {"dataset": dataset, "questions": questions}
    if dataset in training:
        return trained_probe(hidden, greedy, *training[dataset], settings, **common)
    log.info("%s: train split missing or unlike test; cross-fitting over the test split", dataset)
    return crossfit_probe(hidden, greedy, settings, folds=probe.get("crossfit_folds", 5), **common)


def score_ood_probe(*, questions: pd.DataFrame, greedy: pd.DataFrame, hidden: pd.DataFrame,
                    training: Mapping[str, TablePair], probe: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """The OOD probe of ``dataset`` as the registry calls it: learned on the pooled train splits in
    ``training`` (every dataset but ``dataset``, in their order)."""
    return ood_probe(hidden, greedy, training, ProbeSettings.from_config(probe, ood=True), dataset=dataset,
                     questions=questions)


def fit_pooled_probe(pairs: Sequence[tuple[str, TablePair]], settings: ProbeSettings, *, name: str) -> nn.Module:
    """The probe learned on the pooled (hidden, greedy) train tables of ``pairs`` (source name, tables), in order."""
    if not pairs:
        raise ValueError(f"{name}: the OOD probe needs at least one other dataset to train on")
    labelled = [_labelled(hidden, greedy, f"{source} train") for source, (hidden, greedy) in pairs]
    widths = {X.shape[1] for X, _ in labelled if len(X)}
    if len(widths) > 1:
        raise ValueError(f"{name}: training datasets have hidden states of different sizes {sorted(widths)}")
    X_train = np.concatenate([X for X, _ in labelled if len(X)]) if widths else np.zeros((0, 0), np.float32)
    y_train = np.concatenate([y for _, y in labelled])
    return train_probe(X_train, y_train, settings, dataset=name)


# ---- probe files: a probe the workflow trained, for the router ---------------------------------------

PROBE_FILE_VERSION = 1


def save_probe(model: nn.Sequential, path, *, slm: str, method: str, layer: int, settings: ProbeSettings,
               datasets: Sequence[str]) -> None:
    """Write ``model`` with what it was trained for (SLM, method, hidden layer, settings, datasets), atomically."""
    first = next(module for module in model if isinstance(module, nn.Linear))
    record = {"version": PROBE_FILE_VERSION, "slm": slm, "method": method, "layer": int(layer),
              "n_features": int(first.in_features), "settings": asdict(settings), "datasets": list(datasets),
              "state_dict": model.state_dict()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(record, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def release_probe(*, training: Mapping[str, TablePair], probe: Mapping[str, Any], path, slm: str, method: str,
                  layer: int) -> None:
    """A probe learned on other datasets, as the registry releases it: learned on the pooled train tables of every
    dataset in ``training`` (in its order) and saved with what it was learned for."""
    settings = ProbeSettings.from_config(probe, ood=True)
    model = fit_pooled_probe(list(training.items()), settings, name=f"{slm} {method} (all datasets)")
    save_probe(model, path, slm=slm, method=method, layer=layer, settings=settings, datasets=list(training))


def load_released_probe(path) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """A released probe file as the router uses it: its confidence function of hidden vectors and its record."""
    model, record = load_probe(path)
    return (lambda vectors: probe_confidence(model, np.asarray(vectors, dtype=np.float32))), record


def load_probe(path) -> tuple[nn.Sequential, dict[str, Any]]:
    """A probe file written by :func:`save_probe`: the model (eval mode) and its record without the weights."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a probe file the workflow wrote ({err})") from None
    if not isinstance(record, dict) or record.get("version") != PROBE_FILE_VERSION:
        raise ValueError(f"{path}: not a probe file of version {PROBE_FILE_VERSION}")
    n = int(record["n_features"])
    model = build_probe(n, record["settings"]["hidden_sizes"], np.zeros(n, np.float32), np.ones(n, np.float32))
    model.load_state_dict(record["state_dict"])
    return model.eval(), {key: value for key, value in record.items() if key != "state_dict"}
