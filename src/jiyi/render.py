"""What every report jiyi writes shares: a value or a label as table text, a figure as PNG bytes,
and the HTML page templates shipped in `jiyi/templates`.

>>> format_value(0.912345), format_value(12), format_value(None)
('0.9123', '12', 'n/a')

A leaf module: matplotlib and jinja2 are imported inside the functions that use them.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from functools import cache
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


log = logging.getLogger("jiyi")
# Fonts that draw Chinese, Japanese and Korean, tried after matplotlib's own (DejaVu has no CJK).
CJK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN",
    "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS",
)  # fmt: skip
CJK_TEXT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


@cache
def installed_cjk_fonts() -> tuple[str, ...]:
    """The CJK-capable font families matplotlib can find on this machine, in CJK_FONTS order."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(name for name in CJK_FONTS if name in names)


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of a matplotlib `Figure` (drawn with Agg; no pyplot, no display).

    Text with CJK characters falls back to an installed CJK font; with none installed the
    characters draw as boxes, and one warning says which package to install (instead of
    matplotlib's warning per missing glyph)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    cjk = [t for t in fig.findobj(Text) if CJK_TEXT.search(t.get_text())]
    fallback = installed_cjk_fonts()
    for text in cjk:
        if fallback:
            text.set_fontfamily([*text.get_fontfamily(), *fallback])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": "jiyi"})
    if cjk and not fallback:
        warn_no_cjk_font()
    return buffer.getvalue()


@cache
def warn_no_cjk_font() -> None:
    log.warning(
        "No CJK font is installed, so Chinese/Japanese/Korean labels in the PNG plots draw as "
        "boxes (the HTML pages show the text). Install one, e.g. `apt-get install "
        "fonts-noto-cjk`."
    )


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
