"""The practitioner's questions on Rotten Tomatoes with MiniLM: how much data is enough, L1 vs
weight decay, and counterfactual bias probes.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_practice.py all --output bench/results/practice
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_practice.py curve --output ...   # one part

Parts (each writes OUTPUT/PART.json; RESULTS.md is re-rendered by `bench_train.py --render-only`):

    curve  `jiyi curve` (3 seeds, sizes 1%..100%, 1 epoch but at least 60 steps, lr 1e-4, 500 validation rows); the
           power law refitted on the sizes up to 25% only, and its prediction for the 50% and
           100% points against what was measured (the extrapolation error)
    l1     16 examples per class, 3 seeds: no regularisation, weight decay, an L1 penalty and
           L1 as a proximal step; test accuracy and the share of (near-)zero weights
    bias   `jiyi bias` on a MiniLM run fine-tuned on Rotten Tomatoes, with the default swap list
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    JIYI,
    md_table,
    per_class_sample,
    read_csv,
    read_parts,
    repo_relative,
    run_checked,
    subset,
    usable_cores,
    write_csv,
)
from common import write_json as save_json

PARTS = ("curve", "l1", "bias")
CURVE = {"seeds": 3, "epochs": 1, "min_steps": 60, "batch_size": 32, "lr": 1e-4,
         "max_length": 64, "target": 0.85, "fit_up_to": 0.25, "validation_rows": 500}  # fmt: skip
L1_ARMS = {
    "none": ["--weight-decay", "0"],
    "weight decay 0.01": ["--weight-decay", "0.01"],
    "L1 1e-5": ["--weight-decay", "0", "--l1", "1e-5"],
    "L1 prox 1": ["--weight-decay", "0", "--l1", "1", "--l1-prox"],
    "L1 prox 10": ["--weight-decay", "0", "--l1", "10", "--l1-prox"],
}
FEWSHOT = {"per_class": 16, "seeds": [0, 1, 2], "epochs": 10, "batch_size": 8, "lr": 5e-5,
           "max_length": 64, "validation_rows": 256}  # fmt: skip


def export(out: Path) -> Path:
    data = out / "data"
    if not (data / "train.csv").is_file():
        run_checked([*JIYI, "data", "export", "rotten-tomatoes", "--output", str(data)])
    return data


def part_curve(out: Path, threads: int) -> dict[str, Any]:
    import numpy as np

    from jiyi.curve import fit_draws, fit_power_law, power_law

    data, c = export(out), CURVE
    folder = out / "curve"
    val = out / "curve-validation.csv"  # a stratified-by-chance subset: each point validates often
    write_csv(val, subset(read_csv(data / "validation.csv"), c["validation_rows"], seed=0))
    cmd = [*JIYI, "curve", "--model", "minilm", "--train", str(data / "train.csv"),
           "--validation", str(val), "--output", str(folder),
           "--seeds", str(c["seeds"]), "--epochs", str(c["epochs"]),
           "--min-steps", str(c["min_steps"]), "--batch-size", str(c["batch_size"]),
           "--lr", str(c["lr"]), "--max-length", str(c["max_length"]),
           "--target", str(c["target"]), "--threads", str(threads)]  # fmt: skip
    t0 = time.perf_counter()
    run_checked(cmd)
    seconds = time.perf_counter() - t0
    curve = json.loads((folder / "curve.json").read_text())
    points = [p for p in curve["points"] if p.get("metric") is not None]
    sizes = sorted({p["n"] for p in points})
    cut = c["fit_up_to"] * max(sizes) * 1.001
    small = [p for p in points if p["n"] <= cut]
    n = np.asarray([p["n"] for p in small], dtype=float)
    y = np.asarray([p["metric"] for p in small], dtype=float)
    fitted = fit_power_law(n, y)
    checks = []
    if fitted is not None:
        params, cov = fitted
        draws, how = fit_draws(n, y, params, cov, higher_is_better=True, bounded=True,
                               resamples=1000)  # fmt: skip
        for size in (s for s in sizes if s > cut):
            measured = [p["metric"] for p in points if p["n"] == size]
            predicted = float(power_law(size, *params))
            band = power_law(size, *draws.T) if len(draws) else np.array([predicted])
            lo, hi = (float(v) for v in np.quantile(band, [0.025, 0.975]))
            mean = statistics.mean(measured)
            checks.append({"n": size, "measured_mean": mean, "measured": measured,
                           "predicted": predicted, "low": lo, "high": hi,
                           "error_points": 100 * (predicted - mean),
                           "inside": lo <= mean <= hi})  # fmt: skip
    return {
        "command": shlex.join(cmd),
        "seconds": seconds,
        "settings": c,
        "summary": curve.get("summary"),
        "by_size": curve.get("by_size") or curve.get("analysis", {}).get("by_size"),
        "fit": curve.get("fit") or curve.get("analysis", {}).get("fit"),
        "doubling": curve.get("doubling") or curve.get("analysis", {}).get("doubling"),
        "target": curve.get("target") or curve.get("analysis", {}).get("target"),
        "extrapolation": {
            "fit_sizes": sorted({int(x) for x in n}),
            "params": None if fitted is None else [float(v) for v in fitted[0]],
            "uncertainty": how if fitted is not None else None,
            "checks": checks,
        },
        "plot": str(folder / "curve.png"),
    }


def part_l1(out: Path, threads: int) -> dict[str, Any]:
    data, f = export(out), FEWSHOT
    folder = out / "l1"
    val = folder / "validation.csv"
    write_csv(val, subset(read_csv(data / "validation.csv"), f["validation_rows"], seed=0))
    results: dict[str, Any] = {}
    for seed in f["seeds"]:
        train = folder / f"train_seed{seed}.csv"
        write_csv(train, per_class_sample(read_csv(data / "train.csv"), f["per_class"], seed))
        for arm, flags in L1_ARMS.items():
            run_dir = folder / "runs" / f"{arm.replace(' ', '_')}_seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            cmd = [*JIYI, "train", "--model", "minilm", "--train", str(train),
                   "--validation", str(val), "--test", str(data / "test.csv"),
                   "--output", str(run_dir), "--epochs", str(f["epochs"]),
                   "--batch-size", str(f["batch_size"]), "--lr", str(f["lr"]),
                   "--max-length", str(f["max_length"]), "--seed", str(seed),
                   "--threads", str(threads), *flags]  # fmt: skip
            summary = json.loads(run_checked(cmd).stdout.strip().splitlines()[-1])
            test = json.loads((run_dir / "eval" / "metrics.json").read_text())
            arm_rows = results.setdefault(arm, {"flags": flags, "seeds": {}})
            arm_rows["seeds"][seed] = {
                "accuracy": test["accuracy"],
                "sparsity_final": summary.get("sparsity"),
                "sparsity_tested": test.get("sparsity"),
            }
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for arm in results.values():
        acc = [s["accuracy"] for s in arm["seeds"].values()]
        arm["accuracy_mean"], arm["accuracy_std"] = statistics.mean(acc), statistics.stdev(acc)
        tested = [s["sparsity_tested"] or {} for s in arm["seeds"].values()]
        for key in ("near_zero", "exact_zero"):
            arm[key] = statistics.mean(t.get(key, float("nan")) for t in tested)
    return {"settings": f, "arms": results}


def part_bias(out: Path, threads: int, run: Path) -> dict[str, Any]:
    data = export(out)
    if not (run / "model").is_dir():
        raise SystemExit(f"--run {run}: no fine-tuned run there (run bench_train.py first)")
    folder = out / "bias"
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [*JIYI, "bias", str(run), "--data", str(data / "test.csv"), "--output", str(folder)]
    t0 = time.perf_counter()
    run_checked(cmd)
    result = json.loads((folder / "bias.json").read_text())
    return {"command": shlex.join(cmd), "seconds": time.perf_counter() - t0, "bias": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=[*PARTS, "all"])
    parser.add_argument("--output", required=True, help="folder for data, runs and PART.json")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument(
        "--run",
        default=str(Path(__file__).resolve().parent / "results" / "runs" / "jiyi"),
        help="the fine-tuned Rotten Tomatoes run the bias part probes (bench_train.py's)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("JIYI_NO_PROGRESS", "1")
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for part in PARTS if args.part == "all" else (args.part,):
        print(f"[{part}] running ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if part == "curve":
            result = part_curve(out, args.threads)
        elif part == "l1":
            result = part_l1(out, args.threads)
        else:
            result = part_bias(out, args.threads, Path(args.run))
        result["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        save_json(out / f"{part}.json", result)
        print(f"[{part}] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


# --- RESULTS.md --------------------------------------------------------------------------------


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md from FOLDER/PART.json (curve, l1, bias), paths
    relative to the repository; "" when no part has run."""
    parts = read_parts(folder, PARTS)
    if not parts:
        return ""
    lines = ["## How much data, L1, bias (bench/bench_practice.py)\n"]
    if "curve" in parts:
        lines += _practice_curve(parts["curve"])
    if "l1" in parts:
        lines += _practice_l1(parts["l1"])
    if "bias" in parts:
        lines += _practice_bias(parts["bias"])
    return repo_relative("\n".join(lines))


def _practice_curve(r: dict[str, Any]) -> list[str]:
    s = r["settings"]
    rows = [
        [f"{b['n']:,}", f"{b['mean']:.4f} ± {b.get('std') or 0:.4f}", str(b.get("seeds", ""))]
        for b in r.get("by_size") or []
    ]
    lines = [
        "### Learning curve: MiniLM on Rotten Tomatoes\n",
        f"`{r['command']}` ({r['seconds'] / 60:.0f} min). Validation accuracy on "
        f"{s.get('validation_rows', 1276):,} rows of the validation split (the same rows for "
        f"every point); {s['seeds']} seeds per size (each seed draws its own nested, "
        f"stratified subsets); {s['epochs']} epoch with at least {s['min_steps']} steps, batch "
        f"{s['batch_size']}, lr {s['lr']}, max length {s['max_length']}.\n",
        md_table(["training examples", "accuracy mean ± std", "seeds"], rows),
        "",
        f"Summary line: {r.get('summary')}\n",
    ]
    fit = r.get("fit")
    if fit:
        lines.append(
            "Fit on all sizes: a = {:.4f}, b = {:.3f}, c = {:.3f} (95% intervals in curve.json; "
            "{}).\n".format(fit["a"]["value"], fit["b"]["value"], fit["c"]["value"],
                             fit.get("uncertainty"))
        )  # fmt: skip
    ex = r["extrapolation"]
    if ex["checks"]:
        sizes = ", ".join(f"{n:,}" for n in ex["fit_sizes"])
        lines += [
            f"Extrapolation: the power law refitted on the sizes up to "
            f"{s['fit_up_to']:.0%} only ({sizes} examples), predicting the larger sizes:\n",
            md_table(
                ["examples", "measured mean", "predicted", "95% band", "error (points)", "inside"],
                [
                    [f"{c['n']:,}", f"{c['measured_mean']:.4f}", f"{c['predicted']:.4f}",
                     f"{c['low']:.4f}–{c['high']:.4f}", f"{c['error_points']:+.2f}",
                     "yes" if c["inside"] else "no"]
                    for c in ex["checks"]
                ],
            ),
            "",
        ]  # fmt: skip
    if r.get("plot"):
        lines.append(f"Plot: `{r['plot']}` (copied to `docs/rt-curve.png`).\n")
    return lines


def _practice_l1(r: dict[str, Any]) -> list[str]:
    s = r["settings"]
    rows = []
    for arm, a in r["arms"].items():
        per_seed = ", ".join(f"{v['accuracy']:.4f}" for v in a["seeds"].values())
        rows.append([arm, " ".join(a["flags"]), f"{a['accuracy_mean']:.4f} ± "
                     f"{a['accuracy_std']:.4f}", per_seed, f"{a['near_zero']:.2%}",
                     f"{a['exact_zero']:.2%}"])  # fmt: skip
    return [
        "### L1 vs weight decay vs neither, few-shot\n",
        f"MiniLM, {s['per_class']} training examples per class drawn per seed (seeds "
        f"{', '.join(map(str, s['seeds']))}), {s['epochs']} epochs, batch {s['batch_size']}, lr "
        f"{s['lr']}, max length {s['max_length']}; best epoch by accuracy on {s['validation_rows']} "
        "validation rows; test accuracy on all 1,275 test rows. Sparsity: share of the penalised "
        "weights (matrices, not biases or LayerNorm) of the tested model with |w| < 1e-3, and "
        "exactly 0.\n",
        md_table(["arm", "flags", "test accuracy", "per seed", "\\|w\\| < 1e-3", "w = 0"], rows),
        "",
    ]


def _practice_bias(r: dict[str, Any]) -> list[str]:
    b = r["bias"]
    lo, hi = b["flip_rate_ci95"]
    rows = [
        [pair, p["group"], str(p["n"]), str(p["n_flipped"]), f"{p['mean_change']:+.4f}",
         f"{p['mean_abs_change']:.4f}"]
        for pair, p in list(b["by_pair"].items())[:12]
    ]  # fmt: skip
    worst = [
        f"- {w['change']:+.3f} ({w['label']} → {w['counterfactual_label']}): "
        f"“{w['text'][:110]}” → “{w['counterfactual'][:110]}”"
        for w in b["worst"][:5]
    ]
    return [
        "### Counterfactual bias probe: the MiniLM Rotten Tomatoes run\n",
        f"`{r['command']}` ({r['seconds']:.0f} s), the default English swap list. "
        f"{b['n_affected']:,} of {b['n_texts']:,} test texts hold a listed term. Flip rate "
        f"**{b['flip_rate']:.2%}** ({b['n_flipped']} texts; 95% {lo:.2%}–{hi:.2%}); mean change "
        f"of the originally predicted class's probability {b['mean_change']:+.4f}, mean absolute "
        f"change {b['mean_abs_change']:.4f}.\n",
        md_table(["pair", "group", "texts", "flipped", "mean change", "mean \\|change\\|"], rows),
        "",
        "Largest changes:\n",
        *worst,
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
