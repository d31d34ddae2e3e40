"""What every report jiyi writes shares: a value or a label as table text, a figure as PNG bytes,
and the HTML page templates shipped in `jiyi/templates`.

>>> format_value(0.912345), format_value(12), format_value(None)
('0.9123', '12', 'n/a')

A leaf module: matplotlib and jinja2 are imported inside the functions that use them.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def format_value(value: Any) -> str:
    """A metric or count as table text: floats to 4 places, integers as they are, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return str(value)


def shorten_label(label: Any, width: int = 24) -> str:
    """Shorten a long label in the middle, where label families differ least at the ends.

    >>> shorten_label("a_rather_long_label_name_17")
    'a_rather_lo…abel_name_17'
    """
    label = str(label)
    if len(label) <= width:
        return label
    head = (width - 1) // 2
    return label[:head] + "…" + label[-(width - 1 - head) :]


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of a matplotlib `Figure` (drawn with Agg; no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": "jiyi"})
    return buffer.getvalue()


def page_template(name: str, filters: dict[str, Any] | None = None) -> Any:
    """A jinja2 template shipped in jiyi/templates (autoescaped, strict about undefined names);
    templates may `{% include %}` each other, e.g. the shared `_base_style.html`."""
    import jinja2

    def load(template: str) -> str:
        return resources.files("jiyi").joinpath("templates", template).read_text("utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters.update(filters or {})
    return env.get_template(name)
