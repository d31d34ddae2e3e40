"""What a model card may say, read from the files of a run folder (`jiyi.runs.RUN_FORMAT`) and,
for a folder `jiyi compress` wrote, from its jiyi.json, its compress.json and the run it came from.

    RUN_DIR/config.yaml          hyperparameters, data files, the command
    RUN_DIR/model/jiyi.json      task, labels, max length, validation metrics of the best step
    RUN_DIR/model/config.json    architecture, id2label, jiyi_source (me5-small's provenance),
                                 jiyi_trimmed_vocab (--trim-vocab)
    RUN_DIR/metrics.jsonl        the "start" event (split sizes, truncation) and the "test" event
    RUN_DIR/eval/metrics.json    the latest evaluation (slices with --slice-by)
    RUN_DIR/eval/bias/bias.json  `jiyi bias`

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi import runs
from jiyi.errors import JiyiError
from jiyi.tasks.registry import TaskSpec

CARD_FILE = "README.md"
STATE_MARK = "<!-- jiyi-card "  # the card's own memory: which data eval/metrics.json holds
BIAS_FILE = "bias/bias.json"  # under RUN_DIR/eval (`jiyi bias`'s default --output)
COMPRESS_REPORT = "compress.json"


@dataclass
class CardFacts:
    """Everything a card is rendered from; each field read from one file (None: not there)."""

    folder: Path
    """Where README.md goes: RUN_DIR, or a folder `jiyi compress` wrote."""
    run_dir: Path | None
    """The training run (config.yaml, metrics.jsonl); None when it cannot be found."""
    model_dir: Path
    spec: TaskSpec
    config: dict[str, Any]
    meta: dict[str, Any]
    model_config: dict[str, Any]
    start: dict[str, Any]
    """metrics.jsonl's "start" event: n_train, n_validation, truncated, windows, world_size..."""
    test: dict[str, Any] | None
    """metrics.jsonl's "test" event: the headline of the --test evaluation at the end of training."""
    evaluation: dict[str, Any] | None
    """eval/metrics.json: the latest evaluation written into the run."""
    eval_data: str | None
    """The data eval/metrics.json was computed on, when known."""
    bias: dict[str, Any] | None
    compress_report: dict[str, Any] | None
    """compress.json of a compressed folder (its measurements beside the original's)."""

    @property
    def labels(self) -> list[str]:
        """The model's labels (classes, NER tags) as training recorded them; [] for QA, seq2seq."""
        found = self.meta.get("labels") or self.start.get("labels") or []
        return [str(x) for x in found]

    @property
    def compressed(self) -> dict[str, Any] | None:
        """jiyi.json's "compress" record (origin, chain) of a compressed folder."""
        record = self.meta.get("compress")
        return record if isinstance(record, dict) else None


def gather(folder: str | Path, eval_data: str | None = None) -> CardFacts:
    """Read the facts of RUN_DIR (or of a folder `jiyi compress` wrote). `eval_data`: the --data
    of a `jiyi evaluate` that has just written RUN_DIR/eval (else it is recovered, see
    `evaluated_data`). A folder that is neither is refused naming it."""
    from jiyi.tasks.registry import refusal_message, task_of_run

    folder = Path(folder)
    if folder.name == runs.MODEL_DIR and (folder.parent / runs.RUN_FORMAT["config"]).is_file():
        folder = folder.parent  # RUN_DIR/model -> RUN_DIR
    model_dir = runs.model_dir(folder)
    spec = task_of_run(folder)
    if spec.adapter_module is None:  # a `jiyi pretrain` encoder: nothing to card as a task
        raise JiyiError(refusal_message(spec, "train", "jiyi card"))
    meta = runs.read_meta(model_dir)
    run_dir: Path | None = folder if (folder / runs.RUN_FORMAT["config"]).is_file() else None
    if run_dir is None:  # a folder `jiyi compress` made from RUN_DIR/model
        run_dir = origin_run(meta)
    if run_dir is None:
        raise JiyiError(
            f"{folder}: no {runs.RUN_FORMAT['config']}; `jiyi card` takes a run directory written "
            "by `jiyi train` (or a folder `jiyi compress` made from one)."
        )
    config = read_yaml(run_dir / runs.RUN_FORMAT["config"]) if run_dir else {}
    start, test = run_events(run_dir / runs.RUN_FORMAT["metrics"]) if run_dir else ({}, None)
    evaluation = bias = None
    if run_dir == folder:
        evaluation = read_json(folder / runs.RUN_FORMAT["eval"] / "metrics.json")
        bias = read_json(folder / runs.RUN_FORMAT["eval"] / BIAS_FILE)
    facts = CardFacts(
        folder=folder,
        run_dir=run_dir,
        model_dir=model_dir,
        spec=spec,
        config=config,
        meta=meta,
        model_config=read_json(model_dir / "config.json") or {},
        start=start,
        test=test,
        evaluation=evaluation,
        eval_data=None,
        bias=bias,
        compress_report=read_json(folder / COMPRESS_REPORT) if run_dir != folder else None,
    )
    facts.eval_data = evaluated_data(facts, eval_data)
    return facts


def origin_run(meta: dict[str, Any]) -> Path | None:
    """The run a compressed folder was made from: jiyi.json's compress.origin.path is
    RUN_DIR/model of a run still on disk; None otherwise."""
    record = meta.get("compress")
    if not isinstance(record, dict) or not isinstance(record.get("origin"), dict):
        return None
    origin = Path(str(record["origin"].get("path", "")))
    if origin.name == runs.MODEL_DIR and (origin.parent / runs.RUN_FORMAT["config"]).is_file():
        return origin.parent
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, None when missing; a broken one is a JiyiError naming it."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise JiyiError(f"{path}: not valid JSON ({e}).") from None
    return obj if isinstance(obj, dict) else None


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise JiyiError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise JiyiError(f"{path}: expected a mapping of settings.")
    return data


def run_events(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the first "start" event, the last "test" event) of metrics.jsonl; a torn last line (a
    run killed mid-write) is skipped."""
    start: dict[str, Any] = {}
    test = None
    if not path.is_file():
        return start, test
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("event") == "start" and not start:
            start = record
        elif record.get("event") == "test":
            test = record
    return start, test


def scalars(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The numeric, non-boolean entries of a metrics dict."""
    return {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "event"
    }


def evaluated_data(facts: CardFacts, given: str | None) -> str | None:
    """Which data RUN_DIR/eval/metrics.json holds: `given` (the --data of the `jiyi evaluate`
    writing it now); else the one the previous card recorded for the same metrics.json bytes;
    else the --test file when its numbers are the training's "test" event; else None."""
    if facts.evaluation is None:
        return None
    digest = eval_digest(facts.folder)
    if given is not None:
        return given
    previous = card_state(facts.folder / CARD_FILE)
    if previous.get("eval_sha256") == digest and previous.get("eval_data"):
        return str(previous["eval_data"])
    test = scalars(facts.test)
    evaluation = scalars(facts.evaluation)
    if test and all(evaluation.get(k) == v for k, v in test.items()):
        return facts.config.get("test")
    return None


def eval_digest(folder: Path) -> str | None:
    """sha256 of RUN_DIR/eval/metrics.json (None when absent)."""
    return sha256_file(folder / runs.RUN_FORMAT["eval"] / "metrics.json")


def card_state(card: Path) -> dict[str, Any]:
    """The state line a card keeps at its end ({} when there is none or it is unreadable)."""
    if not card.is_file():
        return {}
    for line in reversed(card.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith(STATE_MARK) and line.endswith("-->"):
            try:
                state = json.loads(line[len(STATE_MARK) : -3])
            except ValueError:
                return {}
            return state if isinstance(state, dict) else {}
    return {}


def sha256_file(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
