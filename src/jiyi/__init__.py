"""jiyi (记忆): form, transfer, inspect, extend, shrink and serve an encoder's memory.

>>> import jiyi
>>> jiyi.load("runs/demo").predict(["a moving, funny film"])  # doctest: +SKIP  (a list per list)
>>> jiyi.load("runs/demo").predict("a moving, funny film")  # doctest: +SKIP  (one dict per string)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jiyi.predict import Classifier


def load(path: str, **kwargs: Any) -> Classifier:
    """Load a run directory or model folder for prediction (torch is imported on first use).
    `.predict(text)` gives one prediction for a string, a list of them for a list of texts."""
    from jiyi.predict import load as _load

    return _load(path, **kwargs)
