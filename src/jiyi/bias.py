"""Counterfactual bias probes: swap terms (he↔she, Emily↔Lakisha), predict both texts, count flips.

    jiyi bias runs/demo --data data/rotten-tomatoes/test.csv
    jiyi bias runs/demo --data reviews.csv --swap my_terms.tsv --one-way --output out/bias

Every text holding at least one listed term is predicted twice, as written and with its terms
swapped; a probe records whether the predicted label flips and how far the probability of the
originally predicted class moves (counterfactual minus original). A model that ignores the
swapped attribute flips nothing and moves nothing.

>>> table = SwapTable.from_rows([("he", "she", "gender"), ("him", "her", "gender")])
>>> swap_text("He told her, then HE left.", table)[0]
'She told him, then SHE left.'
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jiyi.errors import JiyiError

DEFAULT_SWAPS = "swaps_en.tsv"  # in jiyi/data
UNGROUPED = "ungrouped"
Z_95 = 1.959963984540054
# Scripts written without spaces between words: a term holding a Han or kana character matches
# as a substring (他 in 他说), all other terms as whole words.
_NO_SPACES = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]"
)


class Swap(NamedTuple):
    """One replaced occurrence: `term` as it stood at `start` in the original text."""

    term: str
    replacement: str
    start: int
    pair: str
    group: str


@dataclass(frozen=True)
class _Entry:
    counterpart: str  # as written in the swap file
    pair: str  # "he↔she" (both ways) or "he→she" (--one-way): the file line, for the breakdown
    group: str


@dataclass
class SwapTable:
    """Terms (lower-cased) -> what replaces them; `pattern` finds every term in one pass."""

    entries: dict[str, _Entry]
    source: str = "<rows>"
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        terms = sorted(self.entries, key=lambda t: (-len(t), t))  # longest first: 他们 before 他
        parts = [
            re.escape(t) if _NO_SPACES.search(t) else rf"(?<!\w){re.escape(t)}(?!\w)" for t in terms
        ]
        self.pattern = re.compile("|".join(parts) or r"(?!)", re.IGNORECASE)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[str, ...]],
        *,
        one_way: bool = False,
        source: str = "<rows>",
    ) -> SwapTable:
        """(term, counterpart[, group]) rows -> a table. Both directions unless `one_way`; when
        a term already has a counterpart, the earlier row wins (her -> his before her -> him)."""
        entries: dict[str, _Entry] = {}
        for row in rows:
            term, counterpart = row[0], row[1]
            group = row[2] if len(row) > 2 and row[2] else UNGROUPED
            pair = f"{term}{'→' if one_way else '↔'}{counterpart}"
            if term.lower() == counterpart.lower():  # a guard: 其他 kept whole, so 他 in it stays
                entries.setdefault(term.lower(), _Entry(term, pair, group))
                continue
            directions = [(term, counterpart)] + ([] if one_way else [(counterpart, term)])
            for source_term, target in directions:
                entries.setdefault(source_term.lower(), _Entry(target, pair, group))
        return cls(entries, source)


def read_swaps(path: str | Path, *, one_way: bool = False) -> SwapTable:
    """A swap file: `term<TAB>counterpart[<TAB>group]` a line; `#` comments and blank lines skipped.

    A file holding "he<TAB>she<TAB>gender" and "Mr<TAB>Mrs" -> a table with the terms he, she,
    mr and mrs (groups gender and ungrouped). Errors name the file and the line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JiyiError(f"{path}: no such swap file.") from None
    except OSError as e:
        raise JiyiError(f"{path}: cannot read the swap file ({e.strerror}).") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise JiyiError(f"{path} line {line}: not UTF-8 text. Save the file as UTF-8.") from None
    rows: list[tuple[str, ...]] = []
    expected = "expected term<TAB>counterpart, optionally <TAB>group"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in line.split("\t")]
        if len(cells) < 2:
            raise JiyiError(f"{path} line {number}: no tab in {line.strip()!r}; {expected}.")
        if len(cells) > 3:
            raise JiyiError(f"{path} line {number}: {len(cells)} columns; {expected}.")
        if not cells[0] or not cells[1]:
            which = "term" if not cells[0] else "counterpart"
            raise JiyiError(f"{path} line {number}: empty {which}; {expected}.")
        rows.append(tuple(cells))
    if not rows:
        raise JiyiError(f"{path}: no swap pairs, only comments or blank lines; {expected}.")
    return SwapTable.from_rows(rows, one_way=one_way, source=str(path))


def default_swaps_path() -> Path:
    return Path(str(resources.files("jiyi").joinpath("data", DEFAULT_SWAPS)))


def swap_text(text: str, table: SwapTable) -> tuple[str, list[Swap]]:
    """Replace every listed term in one pass (no swapping back), keeping each occurrence's case.

    Whole words only, except terms in Han or kana, which match inside words. Case follows the
    occurrence: ALL CAPS -> ALL CAPS, Capitalised -> Capitalised, lower -> lower; otherwise the
    counterpart as the swap file writes it.

    >>> swap_text("the hero said he, HE and He", SwapTable.from_rows([("he", "she")]))[0]
    'the hero said she, SHE and She'
    """
    swaps: list[Swap] = []

    def replace(match: re.Match[str]) -> str:
        term = match.group()
        entry = table.entries.get(term.lower())
        if entry is None or entry.counterpart.lower() == term.lower():
            return term
        new = _match_case(term, entry.counterpart)
        swaps.append(Swap(term, new, match.start(), entry.pair, entry.group))
        return new

    return table.pattern.sub(replace, text), swaps


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original.islower():
        return replacement.lower()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


@dataclass
class Counterfactual:
    index: int  # position in the input
    line: int  # line in the data file (0 when unknown)
    text: str
    counterfactual: str
    swaps: list[Swap]
    text_pair: str | None = None
    counterfactual_pair: str | None = None
    pair_swaps: list[Swap] = field(default_factory=list)


def counterfactuals(
    texts: Sequence[str],
    table: SwapTable,
    pairs: Sequence[str] | None = None,
    lines: Sequence[int] | None = None,
) -> list[Counterfactual]:
    """The texts (and second texts of pair models) that hold at least one term, swapped."""
    out = []
    for i, text in enumerate(texts):
        new, swaps = swap_text(text, table)
        new_pair, pair_swaps = swap_text(pairs[i], table) if pairs is not None else (None, [])
        if swaps or pair_swaps:
            line = lines[i] if lines is not None else 0
            pair = pairs[i] if pairs is not None else None
            out.append(Counterfactual(i, line, text, new, swaps, pair, new_pair, pair_swaps))
    return out


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (95% by default).

    >>> [round(x, 4) for x in wilson_interval(3, 10)]
    [0.1078, 0.6032]
    """
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def probe(
    predict_proba: Callable[..., np.ndarray],
    items: Sequence[Counterfactual],
    labels: Sequence[str],
    *,
    n_texts: int,
    multilabel: bool = False,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Predict every original and counterfactual (one batched call), then summarise.

    `predict_proba(texts, pairs)` -> (N, C) probabilities. The tracked class of a text is the
    one predicted for the original (the most probable one for multilabel); `change` is its
    counterfactual probability minus its original one. A flip: a different label (a different
    label set at `thresholds` for multilabel). Returns the summary with `rows`: every probed text,
    largest |change| first.
    """
    if not items:
        raise ValueError("probe: no text holds a swap term")
    n = len(items)
    texts = [c.text for c in items] + [c.counterfactual for c in items]
    has_pairs = items[0].text_pair is not None
    pairs = [c.text_pair or "" for c in items] + [c.counterfactual_pair or "" for c in items]
    probs = np.asarray(predict_proba(texts, pairs if has_pairs else None), dtype=np.float64)
    original, swapped = probs[:n], probs[n:]  # (n, C) each
    cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(labels))

    def predicted(p: np.ndarray) -> str | list[str]:
        if multilabel:
            return [label for label, x, t in zip(labels, p, cut, strict=True) if x >= t]
        return labels[int(np.argmax(p))]

    rows = []
    for c, p, q in zip(items, original, swapped, strict=True):
        tracked = int(np.argmax(p))
        label, new_label = predicted(p), predicted(q)
        row: dict[str, Any] = {"index": c.index, "line": c.line, "text": c.text}
        row["counterfactual"] = c.counterfactual
        if has_pairs:
            row["text_pair"], row["counterfactual_pair"] = c.text_pair, c.counterfactual_pair
        row["swaps"] = [_swap_dict(s, "text", has_pairs) for s in c.swaps] + [
            _swap_dict(s, "text_pair", has_pairs) for s in c.pair_swaps
        ]
        row.update(
            label=label,
            counterfactual_label=new_label,
            flipped=label != new_label,
            tracked_label=labels[tracked],
            probability=float(p[tracked]),
            counterfactual_probability=float(q[tracked]),
            change=float(q[tracked] - p[tracked]),
        )
        rows.append(row)
    rows.sort(key=lambda r: -abs(r["change"]))  # stable: ties keep input order

    by_pair: dict[str, list[dict]] = {}
    by_group: dict[str, list[dict]] = {}
    group_of: dict[str, str] = {}
    for row in rows:
        for s in row["swaps"]:
            group_of[s["pair"]] = s["group"]
        for pair in dict.fromkeys(s["pair"] for s in row["swaps"]):
            by_pair.setdefault(pair, []).append(row)
        for group in dict.fromkeys(s["group"] for s in row["swaps"]):
            by_group.setdefault(group, []).append(row)
    order = sorted(by_pair, key=lambda k: (group_of[k], -len(by_pair[k]), k))
    return {
        "n_texts": n_texts,
        "n_affected": n,
        **_stats(rows),
        "by_group": {g: _stats(by_group[g]) for g in sorted(by_group)},
        "by_pair": {k: {"group": group_of[k], **_stats(by_pair[k])} for k in order},
        "rows": rows,
    }


def _swap_dict(s: Swap, where: str, has_pairs: bool) -> dict[str, Any]:
    d = {"term": s.term, "replacement": s.replacement, "start": s.start}
    d |= {"pair": s.pair, "group": s.group}
    return d | ({"field": where} if has_pairs else {})


def _stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """n, flips, flip rate with its 95% Wilson interval, mean and mean |change|."""
    flips = sum(bool(r["flipped"]) for r in rows)
    changes = np.asarray([r["change"] for r in rows], dtype=np.float64)
    low, high = wilson_interval(flips, len(rows))
    return {
        "n": len(rows),
        "n_flipped": flips,
        "flip_rate": flips / len(rows) if rows else 0.0,
        "flip_rate_ci95": [low, high],
        "mean_change": float(changes.mean()) if rows else 0.0,
        "mean_abs_change": float(np.abs(changes).mean()) if rows else 0.0,
    }


def write_bias_dir(out_dir: str | Path, document: dict[str, Any], n_worst: int = 20) -> dict:
    """bias.json (the summary, the `n_worst` largest changes and the settings), counterfactuals.jsonl
    (every probed text) and bias.html, each written atomically. Returns {file name: path}."""
    from jiyi.io import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    rows = document["rows"]
    summary = {k: v for k, v in document.items() if k != "rows"} | {"worst": rows[:n_worst]}
    paths = {name: out_dir / name for name in ("bias.json", "counterfactuals.jsonl", "bias.html")}
    html = render_html(summary)  # before writing anything: a template error leaves no files
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_json(paths["bias.json"], summary)
    atomic_write_text(paths["counterfactuals.jsonl"], lines)
    atomic_write_text(paths["bias.html"], html)
    return paths


def render_html(summary: dict[str, Any]) -> str:
    """The self-contained page; every text is HTML-escaped (autoescape), swapped words marked."""
    from jiyi.report import page_template

    worst = [
        r
        | {
            "segments": _segments(r["text"], r["swaps"], "text", new=False),
            "counterfactual_segments": _segments(r["counterfactual"], r["swaps"], "text", new=True),
        }
        for r in summary["worst"]
    ]
    template = page_template("bias.html", filters={"pct": _pct, "signed": _signed})
    return template.render(s=summary, worst=worst)


def _segments(text: str, swaps: list[dict], where: str, *, new: bool) -> list[tuple[str, bool]]:
    """Split `text` into (piece, swapped?) around its swaps (positions of the original text).

    >>> _segments("she left", [{"term": "he", "replacement": "she", "start": 0}], "text", new=True)
    [('', False), ('she', True), (' left', False)]
    """
    out, pos, shift = [], 0, 0
    for s in swaps:
        if s.get("field", "text") != where:
            continue
        piece = s["replacement"] if new else s["term"]
        start = s["start"] + (shift if new else 0)
        out += [(text[pos:start], False), (piece, True)]
        pos = start + len(piece)
        shift += len(s["replacement"]) - len(s["term"])
    return [*out, (text[pos:], False)]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def summary_table(summary: dict[str, Any]) -> Any:
    """A rich table: one row per swap pair, grouped, with the group totals and the overall line."""
    from rich.table import Table

    low, high = summary["flip_rate_ci95"]
    table = Table(
        title="counterfactual bias probes",
        caption=f"{summary['n_affected']} of {summary['n_texts']} texts hold a term · "
        f"flip rate {_pct(summary['flip_rate'])} (95% CI {_pct(low)}–{_pct(high)}) · "
        f"mean Δ {_signed(summary['mean_change'])} · mean |Δ| {summary['mean_abs_change']:.4f}"
        " (Δ: counterfactual − original probability of the predicted class)",
    )
    table.add_column("group")
    table.add_column("pair", overflow="fold")
    for name in ("texts", "flips", "flip rate", "mean Δ", "mean |Δ|"):
        table.add_column(name, justify="right")

    def cells(s: dict[str, Any]) -> list[str]:
        rate = f"{_pct(s['flip_rate'])}"
        mean = f"{s['mean_abs_change']:.4f}"
        return [str(s["n"]), str(s["n_flipped"]), rate, _signed(s["mean_change"]), mean]

    for group, stats in summary["by_group"].items():
        pairs = [(pair, s) for pair, s in summary["by_pair"].items() if s["group"] == group]
        for i, (pair, s) in enumerate(pairs):
            table.add_row(group if i == 0 else "", pair, *cells(s))
        table.add_row("", "[b]all[/b]", *cells(stats), end_section=True)
    return table


def cmd_bias(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jiyi.card import write_card_safely
    from jiyi.data.readers import read_inputs
    from jiyi.io import output_folder
    from jiyi.predict import load
    from jiyi.runs import model_dir, read_meta
    from jiyi.tasks import refuse_unless, task_of_run

    meta = read_meta(model_dir(args.run_dir))
    refuse_unless(task_of_run(args.run_dir), "bias", "jiyi bias")
    if args.output:
        output_folder(args.output)  # a file there is refused before any work
    swap_file = args.swap or default_swaps_path()
    table = read_swaps(swap_file, one_way=args.one_way)
    text_column = args.text_column or meta.get("text_column") or "text"
    pair_column = meta.get("text_pair_column")
    try:
        examples = read_inputs(args.data, text_column=text_column, text_pair_column=pair_column)
    except JiyiError as e:
        raise JiyiError(f"--data {e}") from None
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if pair_column else None
    items = counterfactuals(texts, table, pairs, [e.line for e in examples])
    if not items:
        raise JiyiError(
            f"--data {args.data}: none of its {len(texts)} texts holds a term of {swap_file} "
            "(whole words, any case). Pass a --swap list that matches the data's language."
        )

    clf = load(args.run_dir, batch_size=args.batch_size)
    document = probe(
        clf.predict_proba,
        items,
        clf.labels,
        n_texts=len(texts),
        multilabel=clf.multilabel,
        thresholds=list(clf.thresholds) if clf.multilabel else None,
    )
    run_dir = Path(args.run_dir)
    document = {
        "schema": 1,
        "run_dir": str(run_dir),
        "model": str(clf.model_dir),
        "data": str(args.data),
        "text_column": text_column,
        "swap_file": str(swap_file),
        "direction": "one-way" if args.one_way else "both",
        "labels": clf.labels,
        **document,
    }
    base = run_dir if (run_dir / "model").is_dir() else run_dir.parent
    out_dir = Path(args.output) if args.output else base / "eval" / "bias"
    paths = write_bias_dir(out_dir, document, n_worst=args.worst)
    write_card_safely(base)  # RUN_DIR/README.md gains the bias section
    Console(stderr=True).print(summary_table(document))
    print(f"written: {', '.join(paths)} in {out_dir}", file=sys.stderr)
    print(f"open: {paths['bias.html']}", file=sys.stderr)
    return 0


def add_parsers(verbs: Any) -> None:
    """Add `bias` to the CLI's sub-parsers (`verbs` = parser.add_subparsers(...))."""
    p = verbs.add_parser(
        "bias",
        help="counterfactual bias probes: swap he↔she, names, ...; count flipped predictions",
        description="Swap listed terms (he↔she, Emily↔Lakisha, 他↔她) in every text of --data "
        "that holds one, predict both versions, and report how often the label flips and how "
        "far the probability of the original prediction moves, overall, per group and per pair. "
        "Writes bias.json, counterfactuals.jsonl and bias.html into --output.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a jiyi classification run (or its model/)")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="texts: .txt (one per line), CSV/TSV/JSONL/Parquet, datasets folder, or - for stdin",
    )
    p.add_argument(
        "--swap",
        metavar="TERMS.tsv",
        help="term<TAB>counterpart[<TAB>group] a line, # comments (default: jiyi's English "
        "gender and first-name list)",
    )
    p.add_argument(
        "--one-way",
        action="store_true",
        help="swap term -> counterpart only (default: both ways)",
    )
    p.add_argument("--output", metavar="DIR", help="where to write (default: RUN_DIR/eval/bias)")
    p.add_argument("--text-column", help="text column (default: the one the run was trained with)")
    p.add_argument(
        "--worst", type=int, default=20, metavar="N", help="largest changes shown (default 20)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.set_defaults(func=cmd_bias)
