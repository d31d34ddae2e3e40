"""`jiyi select`'s workflow: read the pool, leave out what is labelled, score the rest with a run
(probabilities) or embed it with a model (vectors), pick `budget` rows, write them to label.

>>> chosen = select_rows("pool.csv", 50, run="runs/demo", strategy="hybrid")  # doctest: +SKIP
>>> chosen.rows[0]["reason"]  # doctest: +SKIP
'uncertain: margin 0.02 between fresh 0.51 and rotten 0.49; diverse: distance 0.41 to ...'
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.active import HYBRID_MEASURE, STRATEGIES, UNCERTAINTY_STRATEGIES
from jiyi.active.strategies import (
    hybrid_candidates,
    k_center_greedy,
    uncertainty_order,
    uncertainty_scores,
)
from jiyi.data.text import text_key
from jiyi.errors import JiyiError

CANDIDATE_FACTOR = 4  # hybrid's default --candidates: this many times --budget
NEAREST = "to the nearest labelled/selected row"


@dataclass
class Selection:
    """What `select_rows` chose: the output rows in order and how the pool was reduced."""

    rows: list[dict[str, Any]]
    columns: list[str]
    strategy: str
    pool_rows: int  # rows with text in the pool
    excluded: int  # rows left out because --labelled holds their text
    duplicates: int  # rows left out because an earlier pool row has the same text
    candidates: int | None = None  # hybrid: how many uncertain rows k-center chose among
    predicted: dict[str, int] = field(default_factory=dict)  # predicted label -> chosen rows


def normalise_text(text: str) -> str:
    """The key that matches a pool row to a labelled one: NFKC, case-folded, spaces collapsed.

    >>> normalise_text("  A  Moving\\tFILM ") == normalise_text("a moving film")
    True
    """
    return text_key(text)


def select_rows(
    pool: str,
    budget: int,
    *,
    run: str | None = None,
    model: str | None = None,
    strategy: str | None = None,
    labelled: str | None = None,
    candidates: int | None = None,
    text_column: str | None = None,
    on_bad_rows: str = "error",
    batch_size: int = 64,
) -> Selection:
    """Choose `budget` rows of `pool` to label next (see `jiyi select --help`)."""
    # 1. the flags: what is given decides what can be computed
    if (run is None) == (model is None):
        raise JiyiError(
            "pass --run RUN (a trained classifier: probabilities and its encoder's vectors) or "
            "--model MODEL (an encoder: vectors only, for --strategy diversity), one of them."
        )
    # margin by default with a run: it saved the most labels in bench/bench_active.py
    strategy = strategy or ("margin" if run else "diversity")
    if strategy not in STRATEGIES:
        raise JiyiError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}.")
    if model is not None and strategy != "diversity":
        raise JiyiError(
            f"--strategy {strategy} ranks rows by a classifier's probabilities; --model {model} "
            "gives context vectors only. Pass --run RUN (a trained classifier) instead, or use "
            "--strategy diversity."
        )
    if budget < 1:
        raise JiyiError(f"--budget {budget}: choose at least 1 row to label.")
    if candidates is not None and strategy != "hybrid":
        raise JiyiError("--candidates applies to --strategy hybrid only.")
    n_candidates = CANDIDATE_FACTOR * budget if candidates is None else candidates
    if strategy == "hybrid" and n_candidates < budget:
        raise JiyiError(
            f"--candidates {n_candidates}: hybrid chooses --budget {budget} rows among the "
            "candidates; give at least as many."
        )

    # 2. the run (its probabilities, columns and labels) and the pool
    clf = _load_run(run, batch_size) if run else None
    meta = clf.meta if clf else {}
    column = text_column or meta.get("text_column", "text")
    pair_column = meta.get("text_pair_column")
    examples = _read(pool, "--pool", column, pair_column, on_bad_rows)
    done_rows = _read(labelled, "--labelled", column, pair_column, on_bad_rows) if labelled else []
    done = {_key(e) for e in done_rows}
    kept, excluded, duplicates, seen = [], 0, 0, set()
    for ex in examples:
        key = _key(ex)
        if key in done:
            excluded += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(ex)
    if not kept:
        raise JiyiError(
            f"--pool {pool}: every one of its {len(examples)} rows is already in --labelled "
            f"{labelled}; nothing is left to label."
        )
    if budget > len(kept):
        left = f"{len(kept)} rows of --pool are left"
        why = (
            f" once --labelled leaves out {excluded} and {duplicates} repeat texts"
            if (excluded or duplicates)
            else ""
        )
        raise JiyiError(f"--budget {budget}: only {left}{why}; choose at most {len(kept)}.")

    # 3. score, embed, choose
    texts = [e.text for e in kept]
    pairs = [e.text_pair or "" for e in kept] if pair_column else None
    probs = clf.predict_proba(texts, pairs) if clf else None
    encoder = _encoder(run, model) if strategy in ("diversity", "hybrid") else None
    max_length = clf.max_length if clf else 256

    def vectors(rows: list[Any]) -> np.ndarray:
        from jiyi.inspect.embeddings import embed_texts

        joined = [e.text + (f" {e.text_pair}" if e.text_pair else "") for e in rows]
        return embed_texts(
            encoder, joined, normalize=True, batch_size=batch_size, max_length=max_length
        )

    seed_vectors = None
    if encoder is not None and done_rows:  # new picks keep away from what is labelled
        seed_vectors = vectors(done_rows)
    distances: np.ndarray | None = None
    pool_order: np.ndarray
    if strategy in UNCERTAINTY_STRATEGIES:
        assert probs is not None
        pool_order = uncertainty_order(probs, strategy, clf.multilabel)[:budget]
    elif strategy == "diversity":
        pool_order, distances = k_center_greedy(vectors(kept), budget, labelled=seed_vectors)
    else:
        assert probs is not None
        cand = hybrid_candidates(probs, n_candidates, multilabel=clf.multilabel)
        picks, distances = k_center_greedy(
            vectors([kept[i] for i in cand]), budget, labelled=seed_vectors
        )
        pool_order = cand[picks]

    # 4. the rows to label, in order, each with its reason
    label_column = meta.get("label_column", "label")
    columns = ["rank", "row", column, *([pair_column] if pair_column else []), "score", "reason"]
    columns += ["predicted", label_column] if clf else [label_column]
    rows, predicted = [], {}
    for rank, i in enumerate(pool_order.tolist(), start=1):
        ex = kept[i]
        row: dict[str, Any] = {"rank": rank, "row": ex.line, column: ex.text}
        if pair_column:
            row[pair_column] = ex.text_pair or ""
        parts = []
        if probs is not None and strategy != "diversity":
            measure = strategy if strategy in UNCERTAINTY_STRATEGIES else HYBRID_MEASURE
            value = float(uncertainty_scores(probs[i : i + 1], measure, clf.multilabel)[0])
            parts.append(_uncertain_reason(probs[i], measure, value, clf))
            row["score"] = round(value, 6)
        if distances is not None:
            d = float(distances[rank - 1])
            first = rank == 1 and seed_vectors is None
            parts.append(
                f"diverse: the most typical row (distance {d:.3f} to the pool's mean direction; "
                "nothing labelled yet)"
                if first
                else f"diverse: distance {d:.3f} {NEAREST}"
            )
            row["score"] = round(d, 6)
        row["reason"] = "; ".join(parts)
        if clf:
            row["predicted"] = _predicted(clf, probs[i])
            predicted[row["predicted"]] = predicted.get(row["predicted"], 0) + 1
        row[label_column] = ""
        rows.append(row)
    return Selection(
        rows=rows,
        columns=columns,
        strategy=strategy,
        pool_rows=len(examples),
        excluded=excluded,
        duplicates=duplicates,
        candidates=min(n_candidates, len(kept)) if strategy == "hybrid" else None,
        predicted=predicted,
    )


def to_csv(selection: Selection) -> str:
    """The chosen rows as CSV text (header first), ready for an annotator to fill `label`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=selection.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(selection.rows)
    return buf.getvalue()


def _load_run(run: str, batch_size: int) -> Any:
    from jiyi.predict import load
    from jiyi.runs import model_dir
    from jiyi.tasks import task_of_run
    from jiyi.tasks.registry import tasks_that_calibrate

    if not Path(run).exists():
        raise JiyiError(f"--run {run}: no such folder.")
    folder = model_dir(run, "--run")
    spec = task_of_run(folder)
    if not spec.calibrate:  # the tasks whose runs give class probabilities
        takers = " and ".join(tasks_that_calibrate())
        raise JiyiError(
            f"--run {run}: jiyi select ranks the rows of {takers} runs, not {spec.name}. "
            "For any encoder, --model MODEL --strategy diversity chooses by context vectors."
        )
    return load(folder, batch_size=batch_size)


def _encoder(run: str | None, model: str | None) -> Any:
    from jiyi.inspect.embeddings import load_encoder

    return load_encoder(run, "--run") if run else load_encoder(str(model), "--model")


def _read(
    path: str, flag: str, column: str, pair_column: str | None, on_bad_rows: str
) -> list[Any]:
    from jiyi.data.readers import read_inputs

    try:
        return read_inputs(
            path, text_column=column, text_pair_column=pair_column, on_bad_rows=on_bad_rows
        )
    except JiyiError as e:
        raise JiyiError(f"{flag} {e}") from None


def _key(example: Any) -> str:
    return normalise_text(example.text + "\x1f" + (example.text_pair or ""))


def _uncertain_reason(p: np.ndarray, measure: str, value: float, clf: Any) -> str:
    """ "uncertain: top probability 0.51 (pos)" and the like, for one row's probabilities."""
    labels = clf.labels
    if clf.multilabel:
        j = int(np.argmin(np.abs(p - 0.5)))
        name = {"uncertainty": "least confidence", "margin": "margin", "entropy": "entropy"}
        return (
            f"uncertain: least sure of {labels[j]} (probability {p[j]:.2f}); "
            f"{name[measure]} {value:.3f}"
        )
    top = np.argsort(-p, kind="stable")
    first = f"{labels[top[0]]} {p[top[0]]:.2f}"
    if measure == "uncertainty":
        return f"uncertain: top probability {p[top[0]]:.2f} ({labels[top[0]]})"
    if measure == "margin":
        second = f"{labels[top[1]]} {p[top[1]]:.2f}" if len(p) > 1 else "nothing"
        return f"uncertain: margin {value:.3f} between {first} and {second}"
    return f"uncertain: entropy {value:.3f} nats of at most {np.log(len(p)):.3f} (top {first})"


def _predicted(clf: Any, p: np.ndarray) -> str:
    if clf.multilabel:
        return "|".join(
            lab for lab, x, t in zip(clf.labels, p, clf.thresholds, strict=True) if x >= t
        )
    return clf.labels[int(np.argmax(p))]
