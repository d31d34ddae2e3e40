"""The sections of bench/RESULTS.md after bench_train.py's own, in the order they appear.

Each benchmark renders its own section from its output folder: `render_section(folder) -> str`,
"" when it has not run there. `bench_train.py` writes RESULTS.md: its header and tables, then
these sections (each from `--output`/FOLDER, the folder `make bench` gives that benchmark), then
the rows that failed. A new benchmark adds one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bench_active
import bench_audit
import bench_calibration
import bench_compress
import bench_defaults
import bench_explain
import bench_fewshot
import bench_forecast
import bench_imbalance
import bench_ivfpq
import bench_lora
import bench_memory
import bench_memory_scale
import bench_ner
import bench_parity
import bench_practice
import bench_pretrain
import bench_rowstore
import bench_scale
import bench_scale_ivfpq
import bench_serve
import bench_step
import bench_summarize
import bench_tune
import bench_zh

SECTIONS: list[tuple[str, Callable[[Path], str]]] = [
    ("explain", bench_explain.render_section),
    ("memory", bench_memory.render_section),
    ("memory_scale", bench_memory_scale.render_section),
    ("compress", bench_compress.render_section),
    ("pretrain", bench_pretrain.render_section),
    ("ner", bench_ner.render_section),
    ("practice", bench_practice.render_section),
    ("summarize", bench_summarize.render_section),
    ("serve", bench_serve.render_section),
    ("me5-zh", bench_zh.render_section),
    ("defaults", bench_defaults.render_section),
    ("step", bench_step.render_section),
    ("forecast", bench_forecast.render_section),
    ("active", bench_active.render_section),
    ("audit", bench_audit.render_section),
    ("imbalance", bench_imbalance.render_section),
    ("tune", bench_tune.render_section),
    ("lora", bench_lora.render_section),
    ("calibration", bench_calibration.render_section),
    ("scale", bench_scale.render_section),
    ("ivfpq", bench_ivfpq.render_section),
    ("fewshot", bench_fewshot.render_section),
    ("parity", bench_parity.render_section),
    ("scale_ivfpq", bench_scale_ivfpq.render_section),
    ("rowstore", bench_rowstore.render_section),
]


def render_sections(results: Path) -> list[str]:
    """The section of every benchmark in SECTIONS that has run under `results`, in order."""
    return [text for folder, render in SECTIONS if (text := render(results / folder))]
