"""Class imbalance in `jiyi train` (classification and multilabel): class weights, focal loss,
and the warning when the training split is lopsided.

    jiyi train ... --class-weights balanced --loss focal --focal-gamma 2

`--class-weights balanced` weighs class c by n / (C * n_c), as scikit-learn's
`compute_class_weight("balanced")`: 90 `pos` and 10 `neg` -> pos 100/(2*90) = 0.556,
neg 100/(2*10) = 5.0. For multilabel it is each label's `pos_weight` = negatives / positives
(a label on 10 of 100 rows -> 9.0), clipped to [1/MAX_POS_WEIGHT, MAX_POS_WEIGHT].
`--class-weights FILE` gives them by hand: a JSON object {"neg": 5, "pos": 1} or a CSV of
`label,weight` rows (a header row is allowed). The weights come from the training split only
(never validation or test, before augmentation), are logged in metrics.jsonl's "start" event
and reused as they were by `--resume`.

Focal loss (Lin et al. 2017) scales each example's cross-entropy by (1 - p_t)^gamma, p_t the
probability of its true class: at gamma 0 it is cross-entropy, at gamma 2 an example already at
p_t = 0.9 counts 100 times less. For multilabel the same factor applies to each label's binary
cross-entropy ((1 - p)^gamma on a positive, p^gamma on a negative).

Importing this module imports no torch (`jiyi.config` validates the flags with it).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

BALANCED = "balanced"
# multilabel `balanced` pos_weight is clipped to [1 / MAX_POS_WEIGHT, MAX_POS_WEIGHT]: a label on
# 1 row of 10,000 would otherwise weigh each positive 9,999 times a negative, and one such batch
# swamps the gradient of all the others.
MAX_POS_WEIGHT = 100.0
# `jiyi train` warns when the most frequent class has more than this many times the examples of
# the least frequent one (multilabel: rows carrying the label).
WARN_RATIO = 10.0
# The adapter whose training (`jiyi.train.train_classifier`) reads these flags.
CLASSIFIER_ADAPTER = "jiyi.tasks.classification"


def check_flags(config: Any, spec: Any) -> None:
    """Refuse --loss / --class-weights / --focal-gamma where they do nothing, naming the flag.
    `spec` is the --task's `TaskSpec`; called by `TrainConfig.validate` (which checks that
    --loss is one of `jiyi.config.LOSSES`)."""
    if not (config.focal_gamma >= 0 and math.isfinite(config.focal_gamma)):
        raise JiyiError(f"--focal-gamma must be >= 0, got {config.focal_gamma}.")
    if config.loss != "focal" and config.focal_gamma != 2.0:
        raise JiyiError("--focal-gamma applies to --loss focal; give --loss focal with it.")
    if config.class_weights is not None and not str(config.class_weights).strip():
        raise JiyiError("--class-weights: give `balanced` or a CSV/JSON file of label weights.")
    uses = config.loss != "ce" or config.class_weights is not None
    if uses and spec.adapter_module != CLASSIFIER_ADAPTER:
        flag = "--loss" if config.loss != "ce" else "--class-weights"
        raise JiyiError(f"{flag} applies to --task classification and multilabel, not {spec.name}.")


def class_counts(targets: np.ndarray, n_labels: int) -> np.ndarray:
    """(C,) examples per class: class ids (N,) -> bincount; multi-hot (N, C) -> rows per label.

    >>> class_counts(np.array([0, 0, 1]), 3).tolist()
    [2, 1, 0]
    """
    targets = np.asarray(targets)
    if targets.ndim == 2:  # (N, C) multi-hot
        return (targets > 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(targets.astype(np.int64), minlength=n_labels).astype(np.int64)


def balanced_weights(targets: np.ndarray, n_labels: int, multilabel: bool) -> np.ndarray:
    """(C,) `--class-weights balanced` from the training targets.

    classification: n / (C * n_c) (a class absent from the split counts as 1 example; its weight
    never multiplies a training example). multilabel: pos_weight negatives / positives per label,
    clipped to [1 / MAX_POS_WEIGHT, MAX_POS_WEIGHT].

    >>> balanced_weights(np.array([0] * 90 + [1] * 10), 2, False).round(3).tolist()
    [0.556, 5.0]
    """
    counts = class_counts(targets, n_labels).astype(np.float64)
    n = len(targets)
    if multilabel:
        pos_weight = (n - counts) / np.maximum(counts, 1.0)
        return np.clip(pos_weight, 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)
    return n / (n_labels * np.maximum(counts, 1.0))


def read_weights_file(path: str, labels: list[str], flag: str = "--class-weights") -> np.ndarray:
    """(C,) weights in the order of `labels` from a JSON object {label: weight} or a CSV of
    `label,weight` rows (an optional header). Every label needs one weight > 0; a label the
    training data does not have is an error (a typo would otherwise be ignored)."""
    p = Path(path)
    where = f"{flag} {path}"
    if not p.is_file():
        raise JiyiError(
            f"{where}: no such file. Give `balanced`, or a CSV (label,weight rows) or JSON "
            '({"label": weight}) file with a weight for each label.'
        )
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise JiyiError(f"{where}: not UTF-8 text.") from None
    pairs: list[tuple[str, Any, str]] = []  # (label, raw weight, where it is)
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise JiyiError(f"{where}: not valid JSON ({e}).") from None
        if not isinstance(data, dict):
            raise JiyiError(f'{where}: expected a JSON object {{"label": weight, ...}}.')
        pairs = [(str(k), v, f"key {k!r}") for k, v in data.items()]
    else:
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        for i, row in enumerate(rows, start=1):
            if len(row) != 2:
                raise JiyiError(
                    f"{where} line {i}: expected 2 fields (label,weight), got {len(row)}."
                )
            if i == 1 and _number(row[1]) is None and row[0].strip() not in labels:
                continue  # a header such as `label,weight`
            pairs.append((row[0].strip(), row[1].strip(), f"line {i}"))
    weights: dict[str, float] = {}
    for label, raw, at in pairs:
        value = _number(raw)
        if value is None or not math.isfinite(value):
            raise JiyiError(f"{where} {at}: weight {raw!r} of {label!r} is not a number.")
        if value <= 0:
            raise JiyiError(
                f"{where} {at}: weight {raw!r} of {label!r} must be > 0 (a weight of 0 would "
                "never train the class; drop its rows from the data instead)."
            )
        if label in weights:
            raise JiyiError(f"{where} {at}: label {label!r} is given twice.")
        weights[label] = value
    unknown = [label for label in weights if label not in labels]
    if unknown:
        raise JiyiError(
            f"{where}: labels not in the training data: {', '.join(map(repr, unknown))} "
            f"(its labels: {', '.join(map(repr, labels))})."
        )
    missing = [label for label in labels if label not in weights]
    if missing:
        raise JiyiError(
            f"{where}: no weight for {', '.join(map(repr, missing))}; every label of the "
            "training data needs one."
        )
    return np.asarray([weights[label] for label in labels], dtype=np.float64)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    try:
        return float(str(raw).strip())
    except ValueError:
        return None


def resolve_class_weights(
    spec: str | None, labels: list[str], targets: np.ndarray, multilabel: bool
) -> np.ndarray | None:
    """(C,) weights for --class-weights `spec` (None, `balanced` or a FILE), or None."""
    if spec is None:
        return None
    if spec.strip().lower() == BALANCED:
        return balanced_weights(targets, len(labels), multilabel)
    return read_weights_file(spec, labels)


def imbalance_warning(labels: list[str], targets: np.ndarray) -> str | None:
    """The warning `jiyi train` prints when the largest class has more than WARN_RATIO times
    the examples of the smallest (multilabel: rows carrying the label), None otherwise.

    >>> imbalance_warning(["neg", "pos"], np.array([0] * 5 + [1] * 60)).split(" (")[0]
    "--train is imbalanced: 'pos' has 60 examples, 'neg' 5"
    """
    counts = class_counts(targets, len(labels))
    big, small = int(counts.argmax()), int(counts.argmin())
    if counts[small] * WARN_RATIO >= counts[big]:
        return None
    ratio = (
        "none of it in the training split"
        if counts[small] == 0
        else f"{counts[big] / counts[small]:.1f} to 1, above {WARN_RATIO:g} to 1"
    )
    unit = "rows" if np.asarray(targets).ndim == 2 else "examples"
    return (
        f"--train is imbalanced: {labels[big]!r} has {counts[big]:,} {unit}, {labels[small]!r} "
        f"{counts[small]:,} ({ratio}). Consider --class-weights balanced (or a FILE of weights) "
        "or --loss focal [--focal-gamma 2]."
    )


@dataclass
class Objective:
    """The training loss of a classification or multilabel run: cross-entropy or focal loss,
    with optional class weights (multilabel: `pos_weight` per label)."""

    labels: list[str]
    multilabel: bool
    loss: str = "ce"
    gamma: float = 2.0
    weights: list[float] | None = None
    source: str | None = None  # --class-weights as given: `balanced` or the file

    def __call__(self, logits: Any, targets: Any) -> Any:
        """Mean loss of a batch: logits (B, C); targets (B,) class ids or (B, C) multi-hot."""
        import torch

        weight = None
        if self.weights is not None:
            weight = torch.tensor(self.weights, dtype=logits.dtype, device=logits.device)
        gamma = self.gamma if self.loss == "focal" else 0.0
        if gamma == 0.0:  # torch's own (fused, and what every run without these flags trains)
            if self.multilabel:
                return torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets, pos_weight=weight
                )
            return torch.nn.functional.cross_entropy(logits, targets, weight=weight)
        return focal_loss(logits, targets, gamma, weight=weight, multilabel=self.multilabel)

    def record(self) -> dict[str, Any]:
        """What metrics.jsonl's "start" event keeps (what --resume and the model card read)."""
        out: dict[str, Any] = {"loss": self.loss}
        if self.loss == "focal":
            out["focal_gamma"] = self.gamma
        if self.weights is not None:
            key = "pos_weight" if self.multilabel else "class_weights"
            out[key] = dict(zip(self.labels, self.weights, strict=True))
            out["class_weights_from"] = self.source
        return out

    def settings(self) -> dict[str, str]:
        """The lines of the report's settings table: {"loss": "focal (gamma 2)", "class
        weights": "balanced: neg 5.000, pos 0.556"}."""
        out = {"loss": f"focal (gamma {self.gamma:g})" if self.loss == "focal" else "cross-entropy"}
        if self.weights is not None:
            shown = [f"{label} {w:.3g}" for label, w in zip(self.labels, self.weights, strict=True)]
            if len(shown) > 20:
                shown = [*shown[:20], f"... ({len(shown) - 20} more)"]
            kind = "pos_weight " if self.multilabel else ""
            out["class weights"] = f"{self.source}, {kind}{', '.join(shown)}"
        return out


def focal_loss(
    logits: Any, targets: Any, gamma: float, *, weight: Any = None, multilabel: bool = False
) -> Any:
    """Focal loss, mean over the batch (gamma 0: exactly cross-entropy, weights included).

    classification: logits (B, C), targets (B,) ids; -w_y (1 - p_y)^gamma log p_y, averaged with
    the weights as torch's weighted cross-entropy does (sum over the batch / sum of w_y).
    multilabel: logits and targets (B, C); -(w y (1 - p)^gamma log p + (1 - y) p^gamma
    log(1 - p)), `weight` the (C,) pos_weight, averaged over the B * C entries as BCE is.
    One example at p_y = 0.9, gamma 2: 0.01 * -log 0.9 = 0.00105 (cross-entropy: 0.105).
    """
    import torch
    import torch.nn.functional as F

    tiny = torch.finfo(logits.dtype).tiny  # (1 - p)^gamma's gradient stays finite at p = 1
    if multilabel:
        log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)  # (B, C)
        positive = targets * log_1mp.exp().clamp_min(tiny).pow(gamma) * log_p
        if weight is not None:
            positive = positive * weight  # (C,) pos_weight, broadcast over B
        negative = (1 - targets) * log_p.exp().clamp_min(tiny).pow(gamma) * log_1mp
        return -(positive + negative).mean()
    log_probs = F.log_softmax(logits, dim=-1)  # (B, C)
    log_pt = log_probs.gather(1, targets[:, None]).squeeze(1)  # (B,)
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(tiny)  # 1 - p_t, exact for easy examples
    per_example = -one_minus_pt.pow(gamma) * log_pt  # (B,)
    if weight is None:
        return per_example.mean()
    w = weight[targets]  # (B,)
    return (w * per_example).sum() / w.sum()


def stored_weights(run_dir: str | Path, labels: list[str], multilabel: bool) -> list[float] | None:
    """The class weights (multilabel: pos_weight) a run started with, from its metrics.jsonl
    "start" event; None when it logged none for exactly these labels."""
    from jiyi.card.facts import run_events

    start, _ = run_events(Path(run_dir) / "metrics.jsonl")
    kept = start.get("pos_weight" if multilabel else "class_weights")
    if not isinstance(kept, dict) or list(kept) != list(labels):
        return None
    return [float(kept[label]) for label in labels]


def training_objective(
    config: Any, labels: list[str], targets: np.ndarray, run_dir: Path, say: Any
) -> Objective:
    """The loss `jiyi train` optimises, from --loss, --focal-gamma and --class-weights on the
    training split's `targets`; says what it chose, or warns when the split is imbalanced and
    neither --class-weights nor --loss focal is given. A resumed run keeps the weights it
    started with (the weights FILE may have changed or gone since)."""
    from rich.markup import escape  # labels are user text: never markup

    multilabel = config.task == "multilabel"
    weights = None
    if config.resume and config.class_weights is not None:
        weights = stored_weights(run_dir, labels, multilabel)
    if weights is None:
        found = resolve_class_weights(config.class_weights, labels, targets, multilabel)
        weights = None if found is None else [float(w) for w in found]
    objective = Objective(
        labels=list(labels),
        multilabel=multilabel,
        loss=config.loss,
        gamma=float(config.focal_gamma),
        weights=weights,
        source=config.class_weights,
    )
    if config.class_weights is None and config.loss == "ce":
        warning = imbalance_warning(labels, targets)
        if warning:
            say(f"[yellow]{escape(warning)}[/]")
    else:
        shown = objective.settings()
        weighted = f"; class weights {shown['class weights']}" if "class weights" in shown else ""
        say(escape(f"Training loss: {shown['loss']}{weighted}."))
    return objective
