"""A model card with every run: RUN_DIR/README.md in the Hugging Face format (YAML front matter
with `model-index`, then prose), generated from the run's files and nothing else.

    jiyi card runs/demo            # (re)write runs/demo/README.md and print it

Written at the end of `jiyi train`, and again by `jiyi evaluate` and `jiyi bias` when they add
results to the run; `jiyi compress` writes one into the folder it makes. A card that cannot be
written never fails those verbs: it becomes a warning (`write_card_safely`).

>>> write_card("runs/demo")                  # doctest: +SKIP
PosixPath('runs/demo/README.md')
>>> front_matter_of("runs/demo/README.md")["model-index"][0]["results"][0]["metrics"][0]  # doctest: +SKIP
{'type': 'accuracy', 'value': 0.84, 'name': 'accuracy'}
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from jiyi.card.facts import CARD_FILE, gather
from jiyi.errors import JiyiError

log = logging.getLogger(__name__)


def render_card(folder: str | Path, eval_data: str | None = None) -> str:
    """The card of RUN_DIR (or of a folder `jiyi compress` wrote) as markdown text; nothing is
    written."""
    from jiyi.card.render import render

    return render(gather(folder, eval_data))


def write_card(
    folder: str | Path, eval_data: str | None = None, written_to: str | Path | None = None
) -> Path:
    """Write FOLDER/README.md atomically (FOLDER: RUN_DIR or a compressed model folder; given
    RUN_DIR/model, the card goes to RUN_DIR). `eval_data`: the --data of a `jiyi evaluate` that
    has just written `written_to` (the run's eval/ unless told otherwise). Returns the path."""
    from jiyi.card.render import render
    from jiyi.io import atomic_write_text

    facts = gather(folder)
    if written_to is not None and Path(written_to).resolve() != (facts.folder / "eval").resolve():
        eval_data = None  # `jiyi evaluate --output ELSEWHERE` left the run's eval/ alone
    if eval_data is not None:
        facts = gather(facts.folder, eval_data)
    path = facts.folder / CARD_FILE
    atomic_write_text(path, render(facts))
    return path


def has_card(folder: str | Path) -> bool:
    """Whether FOLDER gets a card: a run directory (config.yaml), its model/ folder, or a folder
    `jiyi compress` made from a run's model/ (its jiyi.json names that origin)."""
    from jiyi.card.facts import origin_run
    from jiyi.runs import MODEL_DIR, RUN_FORMAT, read_meta

    folder = Path(folder)
    for run in (folder, folder.parent if folder.name == MODEL_DIR else None):
        if run is not None and (run / RUN_FORMAT["config"]).is_file():
            return True
    try:
        return origin_run(read_meta(folder)) is not None
    except JiyiError:
        return False


def write_card_safely(
    folder: str | Path, eval_data: str | None = None, written_to: str | Path | None = None
) -> Path | None:
    """`write_card` at the end of a verb: rank 0 only, only for a run (or compressed) folder,
    and any failure is a warning on stderr (the run, the evaluation stay good), never an error.
    Returns the card's path, or None."""
    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate/torchrun only rank 0 writes
        return None
    try:
        if not has_card(folder):
            return None
        return write_card(folder, eval_data, written_to)
    except Exception as e:  # a card must never fail the verb that made the run
        print(f"warning: no model card written for {folder}: {e}", file=sys.stderr)
        log.debug("model card failed", exc_info=True)
        return None


def front_matter_of(card: str | Path) -> dict[str, Any]:
    """The YAML front matter of a card file as a dict (what the Hub reads)."""
    import yaml

    text = Path(card).read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        raise JiyiError(f"{card}: no YAML front matter (--- ... ---) at its top.")
    return yaml.safe_load(text[4 : text.index("\n---\n", 3)]) or {}


def cmd_card(args: argparse.Namespace) -> int:
    if not Path(args.run_dir).exists():
        raise JiyiError(f"RUN_DIR {args.run_dir}: no such folder.")
    path = write_card(args.run_dir)
    sys.stdout.write(path.read_text(encoding="utf-8"))
    print(f"written: {path}", file=sys.stderr)
    return 0


def add_parsers(verbs: Any) -> None:
    """Add `card` to the CLI's sub-parsers (`verbs` = parser.add_subparsers(...))."""
    p = verbs.add_parser(
        "card",
        help="(re)write a run's model card, RUN_DIR/README.md, and print it",
        description="Write RUN_DIR/README.md, a Hugging Face model card (YAML metadata with "
        "model-index; training data and split sizes, hyperparameters, test metrics with 95% "
        "intervals, slices, bias and calibration results, limitations, provenance, the command "
        "that reproduces the run), generated from the run's files, then print it. `jiyi train` "
        "writes it, `jiyi evaluate` and `jiyi bias` update it; this verb writes it again.",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a jiyi run directory (or its model/ folder, or a folder `jiyi compress` wrote)",
    )
    p.set_defaults(func=cmd_card)


__all__ = [
    "add_parsers",
    "cmd_card",
    "front_matter_of",
    "has_card",
    "render_card",
    "write_card",
    "write_card_safely",
]  # fmt: skip
