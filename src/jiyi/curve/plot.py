"""The learning curve drawn (`plot_curve`, DIR/curve.png) and tabulated (`curve_table`, the
table `jiyi curve` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jiyi.curve.fit import power_law
from jiyi.curve.forecast import forecast_at
from jiyi.render import figure_png


def plot_curve(result: dict[str, Any]) -> bytes:
    """PNG: the metric against training examples (log x): each seed's point, mean ± std, the
    fitted power law to twice the data, the forecast with its band to four times the data (when
    one is made), the target, the memory series."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    metric = result["metric"] or "accuracy"
    bounded = metric != "log_loss"
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    series = [("fine-tuned", "tab:blue", result["points"], result.get("by_size", []))]
    if result.get("memory_points"):
        series.append(
            (
                "kNN memory (no training)",
                "tab:orange",
                result["memory_points"],
                result.get("memory_by_size", []),
            )
        )
    for name, colour, points, stats in series:
        pts = [p for p in points if p.get("metric") is not None]
        ax.scatter(
            [p["n"] for p in pts],
            [p["metric"] for p in pts],
            s=14,
            alpha=0.5,
            color=colour,
            label=f"{name}, each seed",
        )
        if stats:
            ns = np.asarray([s["n"] for s in stats])
            mean = np.asarray([s["mean"] for s in stats])
            std = np.asarray([s["std"] or 0.0 for s in stats])
            ax.plot(
                ns,
                mean,
                "o-",
                color=colour,
                linewidth=1.5,
                markersize=4,
                label=f"{name}, mean ± std",
            )
            low, high = mean - std, mean + std
            if bounded:
                low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
            ax.fill_between(ns, low, high, color=colour, alpha=0.15, linewidth=0)
    fit = result.get("fit")
    if fit:
        n_min = min(p["n"] for p in result["points"])
        xs = np.geomspace(n_min, 2 * max(p["n"] for p in result["points"]), 200)
        a, b, c = (fit[k]["value"] for k in "abc")
        ax.plot(
            xs,
            power_law(xs, a, b, c),
            "--",
            color="tab:green",
            label=f"fit a − b·n^(−c): a = {a:.3f}, c = {c:.2f}",
        )
    made = result.get("forecast") or {}
    if made.get("status") == "made" and result.get("by_size"):
        largest = float(result["by_size"][-1]["n"])
        xs = np.geomspace(largest, 4 * largest, 60)
        at = [forecast_at(made, float(n), largest) for n in xs]
        ax.plot(xs, [f["value"] for f in at], ":", color="tab:purple",
                label="forecast (backtested mix of curve families), its band")  # fmt: skip
        ax.fill_between(xs, [f["low"] for f in at], [f["high"] for f in at],
                        color="tab:purple", alpha=0.12, linewidth=0)  # fmt: skip
    if result.get("target"):
        target = result["target"]["value"]
        ax.axhline(target, color="tab:red", linestyle=":", label=f"target {target}")
    ax.axvline(
        result["n_train"],
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"all of --train ({result['n_train']:,})",
    )
    ax.set(
        xlabel="training examples (log scale)",
        ylabel=f"validation {metric}",
        title=f"Learning curve: {Path(str(result['model'])).name}",
    )
    sizes = sorted({p["n"] for p in result["points"]} | {result["n_train"]})
    if made.get("status") == "made" and result.get("by_size"):
        sizes.append(4 * result["by_size"][-1]["n"])
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7, labelrotation=45 if len(sizes) > 6 else 0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return figure_png(fig)


def curve_table(result: dict[str, Any]) -> Any:
    """A rich table: per size, the share of --train, the seeds, mean ± std, the fit, memory."""
    from rich.table import Table

    metric = result["metric"] or "accuracy"
    memory = {s["n"]: s for s in result.get("memory_by_size", [])}
    table = Table(title=f"learning curve: validation {metric}")
    for name in (
        "examples",
        "of --train",
        "seeds",
        metric,
        "fit",
        *(["kNN memory"] if memory else []),
    ):
        table.add_column(name, justify="right")
    fit = result.get("fit")
    for s in result.get("by_size", []):
        spread = f" ± {s['std']:.3f}" if s["std"] is not None else ""
        fitted = power_law(s["n"], *(fit[k]["value"] for k in "abc")) if fit else None
        row = [
            f"{s['n']:,}",
            f"{s['n'] / result['n_train']:.1%}",
            str(s["seeds"]),
            f"{s['mean']:.4f}{spread}",
            f"{fitted:.4f}" if fitted is not None else "–",
        ]
        if memory:
            m = memory.get(s["n"])
            row.append(f"{m['mean']:.4f}" if m else "–")
        table.add_row(*row)
    return table
