"""The search space of `jiyi tune`: `jiyi train` settings (TrainConfig fields) and the values to
try, from a YAML file (`--space FILE`) or the task's defaults (`default_space`).

    lr: loguniform(1e-5, 3e-4)     # a float, uniform in log space (both ends > 0)
    warmup_ratio: uniform(0, 0.2)  # a float, uniform
    epochs: int(1, 4)              # a whole number, both ends included (log: logint(8, 64))
    batch_size: [16, 32]           # one of these values (a categorical choice)
    dropout: [null, 0.1, 0.2]      # null: the flag's own default

Keys are flags without the dashes (`warmup-ratio` and `--warmup-ratio` are read too). A bad
space fails before any training, naming the key and its line:

>>> parse_space("lr: loguniform(3e-4, 1e-5)\\n", "space.yaml", TrainConfig())
Traceback (most recent call last):
jiyi.errors.JiyiError: --space space.yaml line 1: lr: loguniform(3e-4, 1e-5) is inverted (low > high).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jiyi.config import TrainConfig, flag_name
from jiyi.errors import JiyiError

RANGES = ("uniform", "loguniform", "int", "logint")
# TrainConfig fields `jiyi tune` sets itself or that a trial cannot vary
NOT_SEARCHABLE = ("output", "resume", "train", "validation", "test", "task", "metric")
_RANGE = re.compile(
    r"^\s*(?P<kind>[a-z]+)\s*\(\s*(?P<low>[^,()]+?)\s*,\s*(?P<high>[^,()]+?)\s*\)\s*$"
)


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (`kind` in RANGES, `low`..`high`) or `choices`."""

    name: str  # the TrainConfig field
    kind: str  # uniform, loguniform, int, logint or choice
    line: int  # where the space file says it (0: a default space)
    text: str  # as written, for messages
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value of an optuna trial for this setting, typed for its flag (`epochs: int(1,
        4)` gives a float epochs its whole-number value as a float)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind in ("int", "logint"):
            value: Any = trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.kind == "logint"
            )
        else:
            value = trial.suggest_float(
                self.name, self.low, self.high, log=self.kind == "loguniform"
            )
        return float(value) if field_type(self.name) is float else value

    def yaml(self) -> str:
        """The line of a space file that says this parameter."""
        if self.kind == "choice":
            return f"{self.name}: [{', '.join(_yaml_scalar(c) for c in self.choices)}]"
        return f"{self.name}: {self.kind}({self.low:g}, {self.high:g})"


@cache
def field_types() -> dict[str, tuple[type, bool]]:
    """TrainConfig field -> (scalar type, whether None is allowed)."""
    out: dict[str, tuple[type, bool]] = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name not in {f.name for f in dataclasses.fields(TrainConfig)}:
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = (args[0], True) if args else (hint, False)
    return out


def field_type(name: str) -> type:
    return field_types()[name][0]


def parse_space(text: str, source: str, base: TrainConfig) -> list[Param]:
    """The parameters of a YAML space file's text; each is checked against its flag (type, and
    both ends or every choice through TrainConfig's own validation on `base`)."""
    import yaml

    where = f"--space {source}"
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise JiyiError(f"{where}{line}: not valid YAML ({e}).") from None
    if root is None:
        raise JiyiError(f"{where}: the space is empty; give at least one setting to search.")
    if not isinstance(root, yaml.MappingNode):
        raise JiyiError(
            f"{where}: expected a mapping of settings to ranges, e.g. `lr: loguniform(1e-5, 3e-4)`."
        )
    params: list[Param] = []
    seen: dict[str, int] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        at = f"{where} line {line}"
        key = str(key_node.value)
        name = key.removeprefix("--").replace("-", "_")
        if name in seen:
            raise JiyiError(f"{at}: {key} is given twice (first on line {seen[name]}).")
        seen[name] = line
        check_name(name, key, at)
        value = yaml.safe_load(yaml.serialize(value_node))
        param = parse_value(name, value, line, at)
        check_values(param, base, at)
        params.append(param)
    if not params:
        raise JiyiError(f"{where}: the space is empty; give at least one setting to search.")
    return params


def check_name(name: str, key: str, at: str) -> None:
    from jiyi.cli_help import did_you_mean

    if name in NOT_SEARCHABLE:
        raise JiyiError(
            f"{at}: {key} cannot be searched (jiyi tune sets it, or every trial must share it); give it as a flag."
        )
    if name not in field_types():
        hint = did_you_mean(name, field_types())
        raise JiyiError(f"{at}: {key} is not a `jiyi train` flag{hint} (see jiyi train --help).")


def parse_value(name: str, value: Any, line: int, at: str) -> Param:
    """`loguniform(1e-5, 3e-4)` or `[16, 32]` for field `name` -> a Param, its type checked."""
    kind, optional = field_types()[name]
    label = f"{name}: {value}"
    if isinstance(value, list):
        if kind is float:  # YAML reads 1e-5 (no dot) as text
            value = [_number(v) for v in value]
        if not value:
            raise JiyiError(f"{at}: {name}: [] is empty; give at least one value.")
        for v in value:
            if not _fits(v, kind, optional):
                raise JiyiError(
                    f"{at}: {name}: {v!r} is not a value of {flag_name(name)}, which takes "
                    f"{_type_words(kind, optional)}."
                )
        if len(set(map(repr, value))) != len(value):
            raise JiyiError(f"{at}: {name}: {value} repeats a value.")
        choices = tuple(float(v) if kind is float and v is not None else v for v in value)
        return Param(name, "choice", line, label, choices=choices)
    if not isinstance(value, str) or not (m := _RANGE.match(value)):
        raise JiyiError(
            f"{at}: {label}: expected uniform(a, b), loguniform(a, b), int(a, b), logint(a, b) "
            "or a list of values [x, y, ...] (a fixed value is a flag, not a search)."
        )
    range_kind = m["kind"]
    if range_kind not in RANGES:
        raise JiyiError(
            f"{at}: {label}: unknown range {range_kind}(...); use one of {', '.join(RANGES)}."
        )
    try:
        low, high = float(m["low"]), float(m["high"])
    except ValueError:
        raise JiyiError(f"{at}: {label}: the ends must be numbers.") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise JiyiError(f"{at}: {label}: the ends must be finite numbers.")
    if kind not in (int, float):
        raise JiyiError(
            f"{at}: {label}: {flag_name(name)} takes {_type_words(kind, optional)}, not a range of numbers; list its values instead."
        )
    if range_kind in ("int", "logint") and not (low.is_integer() and high.is_integer()):
        raise JiyiError(f"{at}: {label}: {range_kind}(...) takes whole-number ends.")
    if kind is int and range_kind in ("uniform", "loguniform"):
        raise JiyiError(
            f"{at}: {label}: {flag_name(name)} takes whole numbers; use int(a, b) or logint(a, b)."
        )
    if low > high:
        raise JiyiError(f"{at}: {label} is inverted (low > high).")
    if low == high:
        raise JiyiError(
            f"{at}: {label} is empty (low = high); a fixed value is a flag ({flag_name(name)} {m['low']})."
        )
    if range_kind.startswith("log") and low <= 0:
        raise JiyiError(f"{at}: {label}: a log range needs ends above 0.")
    return Param(name, range_kind, line, label, low=low, high=high)


def check_values(param: Param, base: TrainConfig, at: str) -> None:
    """Both ends of a range, or every choice, must be a setting `jiyi train` accepts."""
    values = param.choices if param.kind == "choice" else (param.low, param.high)
    for value in values:
        typed = float(value) if field_type(param.name) is float and value is not None else value
        if field_type(param.name) is int and value is not None:
            typed = int(value)
        try:
            dataclasses.replace(base, **{param.name: typed})
        except JiyiError as e:
            raise JiyiError(f"{at}: {param.text}: {e}") from None
        except (TypeError, ValueError) as e:
            raise JiyiError(f"{at}: {param.text}: {typed!r} is refused ({e}).") from None


def read_space(path: str, base: TrainConfig) -> tuple[list[Param], str]:
    """(parameters, the file's text) of `--space FILE`."""
    p = Path(path)
    if not p.is_file():
        raise JiyiError(f"--space {path}: no such file.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise JiyiError(f"--space {path}: not UTF-8 text.") from None
    return parse_space(text, path, base), text


def default_space(base: TrainConfig, explicit: set[str]) -> list[Param]:
    """The space searched without --space: the learning rate around the task's preset for this
    model's size (a quarter to 4 times it, log scale), the batch size, the warmup and the weight
    decay; a setting given as a flag is left out (the user fixed it).

        lr: loguniform(1.25e-05, 0.0002)   # classification, a small model (preset 5e-5)
        batch_size: [16, 32]
        warmup_ratio: uniform(0, 0.2)
        weight_decay: [0.0, 0.01, 0.1]
    """
    from jiyi.tasks.presets import size_class
    from jiyi.tasks.registry import get_task

    lr = get_task(base.task).preset.lr[size_class(model_hidden_size(base.model))]
    params = [
        Param("lr", "loguniform", 0, "lr (default space)", low=lr / 4, high=lr * 4),
        Param("batch_size", "choice", 0, "batch_size (default space)", choices=(16, 32)),
        Param("warmup_ratio", "uniform", 0, "warmup_ratio (default space)", low=0.0, high=0.2),
        Param(
            "weight_decay", "choice", 0, "weight_decay (default space)", choices=(0.0, 0.01, 0.1)
        ),
    ]
    return [p for p in params if p.name not in explicit]


def model_hidden_size(model: str) -> int | None:
    """The hidden size in the config.json of `model` (alias, folder or run), None if unknown."""
    import json

    from jiyi.models import resolve_model
    from jiyi.tasks.presets import hidden_size_of

    try:
        folder = Path(resolve_model(model))
        values = json.loads((folder / "config.json").read_text("utf-8"))
    except (JiyiError, OSError, ValueError):
        return None
    return hidden_size_of(_Attrs(values))


class _Attrs:
    """A config.json dict read as attributes (`hidden_size_of` takes a Hugging Face config)."""

    def __init__(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            setattr(self, k, _Attrs(v) if isinstance(v, dict) else v)


def space_yaml(params: list[Param]) -> str:
    """A space file saying `params` (OUTPUT/space.yaml: what the study searches)."""
    return "".join(p.yaml() + "\n" for p in params)


def _number(value: Any) -> Any:
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _fits(value: Any, kind: type, optional: bool) -> bool:
    if value is None:
        return optional
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_words(kind: type, optional: bool) -> str:
    words = {float: "numbers", int: "whole numbers", bool: "true or false", str: "text"}
    return words.get(kind, kind.__name__) + (" or null" if optional else "")


def _yaml_scalar(value: Any) -> str:
    import json

    return "null" if value is None else json.dumps(value)
