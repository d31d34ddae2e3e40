"""Out-of-sample probabilities for confident learning: every row is predicted by a model fitted on
the other folds of a stratified k-fold split, never by one that saw it.

- `logistic_oof`: a logistic-regression head on frozen context vectors (the cheap default; its
  C is the one of `C_GRID` whose out-of-fold log loss is lowest).
- `finetune_oof` (in `jiyi.audit.finetune`): a jiyi classifier fine-tuned per fold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jiyi.errors import JiyiError

C_GRID = (0.1, 1.0, 10.0, 100.0)


def check_folds(labels: np.ndarray, names: Sequence[str], folds: int, flag: str = "--data") -> None:
    """Refuse a split that stratified k-fold cannot make: fewer than two classes, fewer rows than
    folds, or a class with fewer examples than folds (named, with what to do)."""
    if folds < 2:
        raise JiyiError(f"--folds {folds}: cross-validation needs at least 2 folds.")
    n = len(labels)
    if len(names) < 2:
        raise JiyiError(
            f"{flag}: every row has the label {names[0]!r}; auditing labels needs at least two "
            "classes."
        )
    if n < folds:
        raise JiyiError(
            f"{flag}: {n} labelled rows, fewer than --folds {folds}; add rows or pass a smaller "
            "--folds (at least 2)."
        )
    counts = np.bincount(labels, minlength=len(names))
    small = [(names[c], int(counts[c])) for c in np.flatnonzero(counts < folds)]
    if small:
        listed = ", ".join(f"{name!r} ({k})" for name, k in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise JiyiError(
            f"{flag}: {len(small)} label(s) have fewer examples than --folds {folds}: "
            f"{listed}{more}. Every fold's model must see each label: add examples of them, "
            f"drop or merge those labels, or pass --folds {max(2, int(counts.min()))} or less."
        )


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out row indices of each fold (stratified, shuffled with `seed`); together they
    cover every row once."""
    from sklearn.model_selection import StratifiedKFold

    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [test for _, test in split.split(np.zeros(len(labels)), labels)]


def _fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int, c: float
) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000).fit(train_x, train_y)
    out = np.zeros((len(test_x), n_classes))
    out[:, model.classes_] = model.predict_proba(test_x)  # (Q, M)
    return out


def logistic_oof(
    vectors: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
) -> tuple[np.ndarray, dict[str, float]]:
    """(N, M) out-of-fold probabilities of a logistic head on `vectors` (N, D), and
    {"C": chosen, "log_loss": its out-of-fold log loss, "accuracy": its out-of-fold accuracy}.

    Each C of `c_grid` gets the same folds; the C with the lowest out-of-fold log loss wins
    (the probabilities are what confident learning reads, so their calibration is the target).
    """
    held_out = stratified_folds(labels, folds, seed)
    best: tuple[float, float, np.ndarray] | None = None
    for c in c_grid:
        probs = np.zeros((len(labels), n_classes))
        for test in held_out:
            train = np.setdiff1d(np.arange(len(labels)), test, assume_unique=True)
            probs[test] = _fit_predict(vectors[train], labels[train], vectors[test], n_classes, c)
        loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())
        if best is None or loss < best[1]:
            best = (c, loss, probs)
    assert best is not None
    c, loss, probs = best
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    return probs, {"C": c, "log_loss": round(loss, 4), "accuracy": round(accuracy, 4)}
