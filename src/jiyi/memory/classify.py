"""Classification with a memory: from its labelled vectors alone, or mixed into a fine-tuned model.

Memory-only (`MemoryClassifier`): no gradient step through the encoder. Three methods over the
memory's unit vectors, chosen on validation data (or by cross-validation on the memory itself):

- `knn`: the k nearest rows vote, each weighted by softmax(similarity / temperature);
- `prototype`: softmax(cosine to each class's mean vector / temperature);
- `logistic`: a logistic-regression head fitted on the vectors (seconds).

kNN-augmented (`AugmentedClassifier`): p = λ·p_kNN + (1 − λ)·p_model, with k, λ and the
temperature tuned on validation data. Labels the model never saw but the memory holds are
added to its label set (p_model = 0 for them), so a class can be learnt without retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

K_GRID = (1, 3, 5, 8, 16, 32, 64)
T_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
LAMBDA_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
C_GRID = (1.0, 10.0, 100.0)
METHODS = ("knn", "prototype", "logistic")


def knn_distribution(
    scores: np.ndarray, neighbour_targets: np.ndarray, k: int, temperature: float
) -> np.ndarray:
    """(Q, K) similarities best first and their rows' (Q, K, C) 0/1 targets -> (Q, C).

    The first k labelled neighbours vote with weights softmax(similarity / temperature); a query
    with no labelled neighbour gets the uniform distribution.
    """
    s = scores[:, :k].astype(np.float64)
    y = neighbour_targets[:, :k].astype(np.float64)
    valid = np.isfinite(s) & (y.sum(axis=2) > 0)
    s = np.where(valid, s, -np.inf)
    top = np.max(s, axis=1, keepdims=True)
    w = np.where(valid, np.exp((s - np.where(np.isfinite(top), top, 0.0)) / temperature), 0.0)
    total = w.sum(axis=1, keepdims=True)
    p = np.einsum("qk,qkc->qc", w, y) / np.maximum(total, 1e-300)
    n_classes = y.shape[2]
    return np.where(total > 0, p, 1.0 / max(n_classes, 1))


def objective(probs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(accuracy or micro-F1 at 0.5 for multilabel, -log loss): larger is better on both."""
    eps = 1e-9
    if (targets.sum(axis=1) == 1).all():
        acc = float((probs.argmax(axis=1) == targets.argmax(axis=1)).mean())
        nll = float(-np.log(np.clip((probs * targets).sum(axis=1), eps, 1)).mean())
        return acc, -nll
    pred = probs >= 0.5
    tp = float((pred & (targets > 0)).sum())
    f1 = 2 * tp / max(float(pred.sum() + targets.sum()), 1.0)
    p = np.clip(probs, eps, 1 - eps)
    nll = float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())
    return f1, -nll


# ---- memory-only --------------------------------------------------------------------------


def _prototypes(vectors: np.ndarray, targets: np.ndarray) -> np.ndarray:
    sums = targets.T @ vectors  # (C, D)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = x / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_logistic(vectors: np.ndarray, targets: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    multilabel = not (targets.sum(axis=1) == 1).all()
    model = LogisticRegression(C=c, max_iter=2000)
    if multilabel:
        return OneVsRestClassifier(model).fit(vectors, targets.astype(int))
    return model.fit(vectors, targets.argmax(axis=1))


def _logistic_proba(model: Any, vectors: np.ndarray, n_classes: int) -> np.ndarray:
    p = model.predict_proba(vectors)
    if p.shape[1] == n_classes:
        return p
    out = np.zeros((len(vectors), n_classes))  # classes absent from a fold's training part
    out[:, model.classes_] = p
    return out


def fit_linear_head(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, c: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A logistic regression on (N, D) vectors with (N,) class ids, as a linear layer whose
    softmax gives its probabilities: (weight (C, D), bias (C,)) float32.

    Two classes: scikit-learn's one weight row w (P(class 1) = sigmoid(w·x + b)) becomes the
    rows -w/2 and w/2, since softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)]. A class
    absent from `labels` gets a zero row and a bias 30 below the others (probability ~0).
    """
    targets = np.eye(n_classes, dtype=np.float32)[labels]
    model = _fit_logistic(vectors, targets, c)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # (1, D) -> (2, D)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-1, 1]) * intercept[0] / 2
    weight = np.zeros((n_classes, vectors.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, float(np.min(intercept)) - 30.0, dtype=np.float32)
    weight[model.classes_], bias[model.classes_] = coef, intercept
    return weight, bias


def _candidates(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray
) -> dict[tuple[str, float, float], np.ndarray]:
    """Probabilities of every (method, param, temperature) candidate on `test_x`."""
    out: dict[tuple[str, float, float], np.ndarray] = {}
    sims = test_x @ train_x.T  # (Q, N)
    kmax = min(max(K_GRID), train_x.shape[0])
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1)
    top, top_sims = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, 1)
    for k in K_GRID:
        if k > kmax and k != K_GRID[0]:
            continue
        for t in T_GRID:
            out[("knn", float(k), t)] = knn_distribution(top_sims, train_y[top], k, t)
    protos = _prototypes(train_x, train_y)
    for t in T_GRID:
        out[("prototype", 0.0, t)] = _softmax(test_x @ protos.T, t)
    if len(np.unique(train_y.argmax(axis=1))) > 1:
        for c in C_GRID:
            model = _fit_logistic(train_x, train_y, c)
            out[("logistic", c, 0.0)] = _logistic_proba(model, test_x, train_y.shape[1])
    return out


def _folds(targets: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds (at most 5; a single 80/20 split above 4,000 rows)."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    n = len(targets)
    y = targets.argmax(axis=1)
    single = (targets.sum(axis=1) == 1).all()
    smallest = int(np.bincount(y).min(initial=n)) if single else n
    if n > 4000:
        strat = y if single and smallest >= 2 else None
        train, test = train_test_split(
            np.arange(n), test_size=min(0.2, 2000 / n), random_state=seed, stratify=strat
        )
        return [(train, test)]
    if single and smallest >= 2:
        k = min(5, smallest)
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), y))
    return list(KFold(min(5, n), shuffle=True, random_state=seed).split(np.zeros(n)))


@dataclass
class MemoryClassifier:
    """A classifier made from a memory's labelled rows; see the module docstring."""

    method: str
    param: float  # k (knn), C (logistic), unused (prototype)
    temperature: float
    names: list[str]
    scores: dict[str, float] = field(default_factory=dict)  # best score per method
    evaluated_on: str = ""
    model: Any = None  # the fitted logistic head or the prototypes

    @classmethod
    def select(
        cls,
        vectors: np.ndarray,
        targets: np.ndarray,
        names: list[str],
        *,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        method: str = "auto",
        seed: int = 0,
    ) -> MemoryClassifier:
        """Pick the method and its settings on `validation` ((vectors, targets) in `names`'
        columns), else by cross-validation on the memory itself; then fit on all of it."""
        if method not in ("auto", *METHODS):
            raise JiyiError(f"--method {method!r}: choose auto, {', '.join(METHODS)}.")
        if len(vectors) < 2 or len(names) < 2:
            raise JiyiError(
                f"the memory has {len(vectors)} labelled rows in {len(names)} classes; a "
                "classifier needs at least two classes. Add labelled rows."
            )
        totals: dict[tuple[str, float, float], list[float]] = {}
        if validation is not None and len(validation[0]):
            splits = [(vectors, targets, *validation)]
            evaluated_on = f"validation ({len(validation[0])} rows)"
        else:
            folds = _folds(targets, seed)
            splits = [(vectors[a], targets[a], vectors[b], targets[b]) for a, b in folds]
            evaluated_on = (
                f"{len(folds)}-fold cross-validation on the memory ({len(vectors)} rows)"
                if len(folds) > 1
                else f"a held-out 20% of the memory ({len(folds[0][1])} rows)"
            )
        for train_x, train_y, test_x, test_y in splits:
            for key, probs in _candidates(train_x, train_y, test_x).items():
                acc, nll = objective(probs, test_y)
                totals.setdefault(key, []).append(acc * len(test_y) + 1e-6 * nll)
        mean = {key: float(np.sum(v)) for key, v in totals.items()}
        n_eval = sum(len(s[3]) for s in splits)
        allowed = [k for k in mean if method in ("auto", k[0])]
        best = max(allowed, key=lambda k: mean[k])
        scores = {
            m: round(max(v for k, v in mean.items() if k[0] == m) / n_eval, 4)
            for m in METHODS
            if any(k[0] == m for k in mean)
        }
        clf = cls(best[0], best[1], best[2], list(names), scores, evaluated_on)
        return clf.fit(vectors, targets)

    def fit(self, vectors: np.ndarray, targets: np.ndarray) -> MemoryClassifier:
        if self.method == "logistic":
            self.model = _fit_logistic(vectors, targets, self.param)
        elif self.method == "prototype":
            self.model = _prototypes(vectors, targets)
        return self

    def predict_proba(
        self, query: np.ndarray, scores: np.ndarray | None, neighbour_targets: np.ndarray | None
    ) -> np.ndarray:
        """(Q, C); `knn` needs the neighbours' similarities and (Q, K, C) targets."""
        if self.method == "knn":
            assert scores is not None and neighbour_targets is not None
            return knn_distribution(scores, neighbour_targets, int(self.param), self.temperature)
        if self.method == "prototype":
            return _softmax(query @ self.model.T, self.temperature)
        return _logistic_proba(self.model, query, len(self.names))

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "k": int(self.param) if self.method == "knn" else None,
            "C": self.param if self.method == "logistic" else None,
            "temperature": self.temperature if self.method != "logistic" else None,
            "scores": self.scores,
            "evaluated_on": self.evaluated_on,
        }


# ---- kNN-augmented --------------------------------------------------------------------------


def tune_augment(
    model_probs: np.ndarray,
    scores: np.ndarray,
    neighbour_targets: np.ndarray,
    targets: np.ndarray,
) -> dict[str, Any]:
    """Grid-search k, temperature and λ for p = λ·p_kNN + (1 − λ)·p_model on validation rows."""
    best: tuple[float, float] | None = None
    chosen: dict[str, Any] = {}
    kmax = scores.shape[1]
    model_score = objective(model_probs, targets)
    for k in K_GRID:
        if k > kmax and k != K_GRID[0]:
            continue
        for t in T_GRID:
            knn = knn_distribution(scores, neighbour_targets, k, t)
            for lam in LAMBDA_GRID:
                score = objective(lam * knn + (1 - lam) * model_probs, targets)
                if best is None or score > best:
                    best = score
                    chosen = {"k": k, "temperature": t, "lambda": lam}
    assert best is not None
    return {
        **chosen,
        "validation_score": round(best[0], 4),
        "model_alone_score": round(model_score[0], 4),
        "n_validation": len(targets),
    }


def extend_labels(model_labels: Sequence[str], memory_labels: Sequence[str]) -> list[str]:
    """The model's labels in its order, then the memory's labels the model does not have."""
    known = set(model_labels)
    return [*model_labels, *(n for n in memory_labels if n not in known)]
