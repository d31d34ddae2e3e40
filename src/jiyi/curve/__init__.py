"""`jiyi curve`: how much labelled data is enough? A learning curve for text classification.

Fine-tune on nested, stratified subsets of the training data (several seeds per size), score
each run on the full validation file, fit a saturating power law metric(n) = a − b·n^(−c) to
describe the points, and say what more data would buy only as far as a backtest inside the
data supports it (several curve families, each checked on how the smaller sizes predict the
larger ones; no forecast when they do not):

    jiyi curve --model minilm --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
               --target 0.85 --memory --output runs/demo-curve

writes DIR/runs/size-N-seed-S/ (a `jiyi train` run each, its subset in train.jsonl),
DIR/curve.json (points, per-size mean/std, the fit, the target estimate, the summary line, the
settings) and DIR/curve.png. A killed curve continues where it stopped: a point is done once its
result is in curve.json; an unfinished run directory is removed and that point trained afresh.

Modules: subsets (--sizes, nested stratified subsets), fit (the power law, its uncertainty, the
summary line), forecast (several curve families weighted by a backtest inside the data, the band
it earns, or a declined forecast), baselines (the kNN memory series, the majority class), run (the resumable loop,
`run_curve`), plot (curve.png and the table), cli (the verb).
"""

from jiyi.curve.baselines import majority_baseline, memory_points
from jiyi.curve.cli import add_parsers, cmd_curve
from jiyi.curve.fit import (
    FLAT,
    LOWER_IS_BETTER,
    MIN_FIT_SIZES,
    POOR_FIT,
    analyse,
    fit_draws,
    fit_power_law,
    power_law,
    size_stats,
    summary_line,
    target_estimate,
)
from jiyi.curve.forecast import FAMILIES, HORIZON, MIN_SIZES, forecast, forecast_at, holdout_check
from jiyi.curve.plot import curve_table, plot_curve
from jiyi.curve.run import (
    CURVE_OWNED,
    NOT_COMPARED,
    CurveOptions,
    curve_settings,
    run_curve,
    train_point,
    write_subset,
)
from jiyi.curve.subsets import (
    DEFAULT_SIZES,
    class_floors,
    nested_subset,
    parse_sizes,
    resolve_sizes,
    strata,
    stratified_order,
)

__all__ = [
    "CURVE_OWNED",
    "DEFAULT_SIZES",
    "FAMILIES",
    "FLAT",
    "HORIZON",
    "LOWER_IS_BETTER",
    "MIN_FIT_SIZES",
    "MIN_SIZES",
    "NOT_COMPARED",
    "POOR_FIT",
    "CurveOptions",
    "add_parsers",
    "analyse",
    "class_floors",
    "cmd_curve",
    "curve_settings",
    "curve_table",
    "fit_draws",
    "fit_power_law",
    "forecast",
    "forecast_at",
    "holdout_check",
    "majority_baseline",
    "memory_points",
    "nested_subset",
    "parse_sizes",
    "plot_curve",
    "power_law",
    "resolve_sizes",
    "run_curve",
    "size_stats",
    "strata",
    "stratified_order",
    "summary_line",
    "target_estimate",
    "train_point",
    "write_subset",
]
