"""What a `jiyi tune` study leaves beside its trials: OUTPUT/best (the best completed trial's run),
OUTPUT/trials.csv (trial, state, params, value, seconds) and OUTPUT/tune.html (optimisation
history, validation curves with the pruned trials, parameter importances, parallel coordinates;
PNG drawn with matplotlib's Agg and embedded, so the page works offline).

Importances are Optuna's fANOVA (a random forest over the completed trials). Where it cannot
run (fewer than 2 completed trials with different values, or it fails), the page says so and
shows the simpler `rank_importance`: the absolute Spearman correlation of each parameter
(choices by their order in the space) with the metric, scaled to sum to 1.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.io import atomic_write_text
from jiyi.render import figure_png, format_value, page_template
from jiyi.tune.space import Param

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "fail", "RUNNING": "running",
          "WAITING": "waiting"}  # fmt: skip


def trial_rows(study: Any, space: list[Param]) -> list[dict[str, Any]]:
    """One row per trial: trial, state, each parameter, value (a pruned trial: the best value it
    reached before it was stopped), seconds, steps, run_dir, note."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        value = t.value if t.state.name == "COMPLETE" else t.user_attrs.get("best_value")
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        row: dict[str, Any] = {"trial": t.number, "state": STATES.get(t.state.name, t.state.name)}
        row |= {p.name: t.params.get(p.name) for p in space}
        row |= {
            "value": value,
            "seconds": None if seconds is None else round(seconds, 1),
            "steps": t.user_attrs.get("steps"),
            "run_dir": t.user_attrs.get("run_dir", ""),
            "note": t.user_attrs.get("note", ""),
        }
        rows.append(row)
    return rows


def write_reports(
    study: Any, out: Path, space: list[Param], metric: str, *, html: bool = True
) -> list[Path]:
    """OUTPUT/best, OUTPUT/trials.csv and (with `html`) OUTPUT/tune.html; returns what it wrote."""
    rows = trial_rows(study, space)
    written = [out / "trials.csv"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "trials.csv", buffer.getvalue())
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    if best is not None:
        link_best(out, best.user_attrs["run_dir"])
        written.append(out / "best")
    if html:
        write_html(study, out, space, metric, rows, best)
        written.append(out / "tune.html")
    return written


def link_best(out: Path, run_rel: str) -> None:
    """OUTPUT/best -> the best trial's folder: a relative symlink, replaced atomically (a copy
    where the file system has no links)."""
    best, tmp = out / "best", out / f".best.{os.getpid()}.tmp"  # one per process: workers race
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    try:
        os.symlink(run_rel, tmp, target_is_directory=True)
    except OSError:
        shutil.copytree(out / run_rel, tmp)
    if best.is_dir() and not best.is_symlink():
        shutil.rmtree(best)
    os.replace(tmp, best)


def write_html(
    study: Any,
    out: Path,
    space: list[Param],
    metric: str,
    rows: list[dict[str, Any]],
    best: Any,
) -> None:
    trials = study.get_trials(deepcopy=False)
    importances, method = param_importances(study, space)
    plots = {
        "optimisation history": history_figure(trials, metric, study.direction.name),
        "validation during training": intermediate_figure(trials, metric),
    }
    if importances:
        plots["parameter importances"] = importance_figure(importances, method)
    if sum(t.state.name == "COMPLETE" for t in trials) >= 2:
        plots["parallel coordinates"] = parallel_figure(trials, space, metric)
    images = {
        name: "data:image/png;base64," + base64.b64encode(figure_png(fig)).decode("ascii")
        for name, fig in plots.items()
    }
    counts = {state: sum(r["state"] == state for r in rows) for state in STATES.values()}
    template = page_template("tune.html", filters={"fmt": format_value})
    html = template.render(
        title=f"jiyi tune: {out.name}",
        metric=metric,
        direction=study.direction.name.lower(),
        counts={k: v for k, v in counts.items() if v},
        best=None
        if best is None
        else {"trial": best.number, "value": best.value, "params": best.params},
        params=[p.name for p in space],
        space=[p.yaml() for p in space],
        rows=rows,
        images=images,
        importances=importances,
        importance_method=method,
    )
    atomic_write_text(out / "tune.html", html)


def param_importances(study: Any, space: list[Param]) -> tuple[dict[str, float], str]:
    """({param: importance}, how it was computed): fANOVA, else `rank_importance`."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}, "needs 2 completed trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        if found and all(math.isfinite(v) for v in found.values()):
            return dict(found), "fANOVA (optuna)"
    except (RuntimeError, ValueError, ImportError, ZeroDivisionError):
        pass
    return rank_importance(complete, space), "|Spearman correlation| with the metric"


def rank_importance(trials: list[Any], space: list[Param]) -> dict[str, float]:
    """Each parameter's |Spearman rank correlation| with the trials' values, scaled to sum 1
    (a parameter that never varied gets 0).

    >>> from types import SimpleNamespace as T
    >>> p = [Param("lr", "loguniform", 0, "", 1e-5, 1e-3), Param("batch_size", "choice", 0, "", choices=(16, 32))]
    >>> ts = [T(params={"lr": lr, "batch_size": 16}, value=v) for lr, v in [(1e-5, .5), (1e-4, .7), (1e-3, .9)]]
    >>> rank_importance(ts, p)
    {'lr': 1.0, 'batch_size': 0.0}
    """
    values = _ranks(np.array([t.value for t in trials], dtype=float))
    raw: dict[str, float] = {}
    for p in space:
        x = _ranks(np.array([axis_value(p, t.params.get(p.name)) for t in trials], dtype=float))
        ok = np.std(x) > 0 and np.std(values) > 0
        raw[p.name] = abs(float(np.corrcoef(x, values)[0, 1])) if ok else 0.0
    total = sum(raw.values())
    return {k: (v / total if total else 0.0) for k, v in raw.items()}


def axis_value(param: Param, value: Any) -> float:
    """A parameter's value on a numeric axis: log10 for log ranges, the index of a choice."""
    if param.kind == "choice":
        return float(param.choices.index(value)) if value in param.choices else math.nan
    if value is None:
        return math.nan
    return math.log10(value) if param.kind.startswith("log") else float(value)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # ties share their mean rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def history_figure(trials: list[Any], metric: str, direction: str) -> Any:
    """Each trial's value by trial number (pruned: grey x at the best it reached) and the best
    so far."""
    fig, ax = _figure()
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.user_attrs.get("best_value")]
    if done:
        ax.plot([t.number for t in done], [t.value for t in done], "o", label="completed")
        pick = max if direction == "MAXIMIZE" else min
        best, xs, ys = None, [], []
        for t in done:
            best = t.value if best is None else pick(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    if pruned:
        ax.plot([t.number for t in pruned], [t.user_attrs["best_value"] for t in pruned], "x",
                color="0.5", label="pruned (best reached)")  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("optimisation history")
    if done or pruned:
        ax.legend(loc="best", fontsize="small")
    return fig


def intermediate_figure(trials: list[Any], metric: str) -> Any:
    """--metric at each validation pass of each trial; pruned trials dashed grey."""
    fig, ax = _figure()
    for t in trials:
        steps = sorted(t.intermediate_values)
        if not steps:
            continue
        ys = [t.intermediate_values[s] for s in steps]
        if t.state.name == "PRUNED":
            ax.plot(steps, ys, "--", color="0.6", marker=".")
        else:
            ax.plot(steps, ys, marker=".", label=f"trial {t.number}" if len(trials) <= 10 else None)
    ax.set_xlabel("validation pass")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("validation during training (pruned: dashed)")
    if len(trials) <= 10 and any(
        t.intermediate_values and t.state.name != "PRUNED" for t in trials
    ):
        ax.legend(loc="best", fontsize="x-small")
    return fig


def importance_figure(importances: dict[str, float], method: str) -> Any:
    fig, ax = _figure(6.4, 0.5 + 0.45 * len(importances))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel(f"importance ({method})")
    ax.set_xlim(0, 1)
    return fig


def parallel_figure(trials: list[Any], space: list[Param], metric: str) -> Any:
    """One vertical axis per parameter and one for the metric; each completed trial a line
    coloured by its value (axes scaled to their range; log ranges in log scale)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    done = [t for t in trials if t.state.name == "COMPLETE"]
    columns = [[axis_value(p, t.params.get(p.name)) for t in done] for p in space]
    columns.append([t.value for t in done])
    data = np.array(columns, dtype=float)  # (axes, trials)
    lo, hi = np.nanmin(data, axis=1), np.nanmax(data, axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (data - lo[:, None]) / span[:, None]
    fig, ax = _figure(max(6.4, 1.6 * data.shape[0]), 3.8)
    norm = Normalize(vmin=lo[-1], vmax=hi[-1] if hi[-1] > lo[-1] else lo[-1] + 1e-9)
    colour = colormaps["viridis"]
    for j, t in enumerate(done):
        ax.plot(range(data.shape[0]), scaled[:, j], color=colour(norm(t.value)), alpha=0.8)
    labels = [*(p.name for p in space), metric]
    ax.set_xticks(range(data.shape[0]), labels)
    for i, p in enumerate([*space, None]):
        ax.axvline(i, color="0.3", lw=0.8)
        for y, raw in ((0, lo[i]), (1, hi[i])):
            ax.annotate(_axis_label(p, raw), (i, y), xytext=(3, 0), textcoords="offset points",
                        fontsize="x-small", va="center")  # fmt: skip
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"parallel coordinates (colour: validation {metric})")
    return fig


def _axis_label(param: Param | None, raw: float) -> str:
    if param is None:
        return f"{raw:.4g}"
    if param.kind == "choice":
        return str(param.choices[int(raw)]) if math.isfinite(raw) else ""
    return f"{10**raw:.3g}" if param.kind.startswith("log") else f"{raw:.3g}"
