"""`--resume`: which settings a resumed run keeps, which it may change, and the check of --output.

jiyi train --output runs/x --resume --max-length 256   # continues, with texts cut anew
jiyi train --output runs/x --resume --lr 1e-4          # refused: the optimizer state was
                                                       # trained with the saved --lr
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from jiyi.config import flag_name, load_yaml_config
from jiyi.errors import JiyiError
from jiyi.io import output_folder
from jiyi.runs import MODEL_DIR, RUN_FORMAT, checkpoint_dirs

# Settings a resumed run may change (given explicitly): they say how long to go on, how often to
# log, save and validate, and how texts are cut, never what the saved optimizer state was
# trained with. Any other setting given with --resume that differs from config.yaml is refused.
RESUME_OVERRIDABLE = (
    "epochs",
    "max_steps",
    "patience",
    "save_steps",
    "keep_checkpoints",
    "keep_final_checkpoint",
    "threads",
    "log_every",
    "eval_batch_size",
    "evals_per_epoch",
    "max_length",  # texts are cut anew; the data position then counts the re-cut batches
    "test",  # evaluated once, at the end
    "precision",
)
NOT_SETTINGS = ("output", "resume")  # given with every --resume, never compared


def prepare_run_dir(
    config: Any,
    explicit: set[str] | frozenset[str] = frozenset(),
    verb: str = "train",
    say: Callable[[str], None] | None = None,
) -> tuple[Path, Any]:
    """Check --output / --resume; returns (RUN_DIR, the settings to run with).

    A new run needs a missing or empty --output folder. On --resume the run's config.yaml wins:
    of the settings given explicitly, those of RESUME_OVERRIDABLE replace the saved ones (said
    through `say`), any other one that differs is refused naming its flag. A run that has no
    checkpoint yet (stopped before its first) starts over, so there every setting given applies.
    """
    assert config.output is not None
    run_dir = output_folder(config.output)
    if not config.resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise JiyiError(
                f"--output {run_dir} already exists and is not empty. Pass --resume to continue "
                f"that run (jiyi {verb} --output {run_dir} --resume), or choose another --output."
            )
        return run_dir, config
    saved = run_dir / RUN_FORMAT["config"]
    if not saved.is_file():
        raise JiyiError(
            f"--resume: {run_dir} holds no config.yaml; it is not a jiyi run to continue."
        )
    has_checkpoint = bool(checkpoint_dirs(run_dir))
    if not has_checkpoint and (run_dir / MODEL_DIR / "config.json").is_file():
        raise JiyiError(
            f"--resume: {run_dir} has finished and kept no resumable checkpoint ({MODEL_DIR}/ holds "
            f"its best model). Fine-tune further from it in a new run (jiyi {verb} --model "
            f"{run_dir} --output NEW_DIR); --keep-final-checkpoint keeps a finished run resumable."
        )
    cls = type(config)
    values = load_yaml_config(str(saved), cls)
    names = {f.name for f in fields(cls)}
    given = [k for k in names if k in explicit and k not in NOT_SETTINGS]
    changed = [k for k in given if not _same(getattr(config, k), values.get(k))]
    refused = [k for k in changed if k not in RESUME_OVERRIDABLE]
    if has_checkpoint and refused:
        k = refused[0]
        raise JiyiError(
            f"--resume: {flag_name(k)} {getattr(config, k)} differs from the run's "
            f"{values.get(k)} ({saved}), and its checkpoint was trained with that. A resumed run "
            f"can change only {', '.join(flag_name(n) for n in RESUME_OVERRIDABLE if n in names)}"
            f". Start a new run (another --output) to change {flag_name(k)}."
        )
    if changed and say is not None:
        said = ", ".join(
            f"{flag_name(k)} {getattr(config, k)} (was {values.get(k)})" for k in changed
        )
        why = "" if has_checkpoint else " (no checkpoint yet: the run starts over)"
        say(f"--resume: continuing with {said}{why}.")
    values.update({k: getattr(config, k) for k in changed})
    values["resume"] = True
    return run_dir, cls(**values)


def _same(given: Any, saved: Any) -> bool:
    """A flag given again with the saved value (a path may be spelled differently)."""
    if given == saved or (isinstance(saved, list) and list(given or ()) == saved):
        return True
    if isinstance(given, str) and isinstance(saved, str) and os.path.exists(given):
        return os.path.realpath(given) == os.path.realpath(saved)
    return False


def differing_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """ "key: OLD there, NEW now" for every setting that differs between a saved study's
    settings and this call's (`jiyi curve`, `jiyi tune` continue only with the same), with the
    nested "training" settings compared key by key.

    >>> differing_settings({"seeds": 3, "training": {"lr": 1e-4}}, {"seeds": 3, "training": {"lr": 5e-5}})
    ['lr: 0.0001 there, 5e-05 now']
    """
    flat_old = {**old, **old.get("training", {})}
    flat_new = {**new, **new.get("training", {})}
    return [
        f"{k}: {flat_old.get(k)!r} there, {flat_new.get(k)!r} now"
        for k in sorted(set(flat_old) | set(flat_new))
        if k != "training" and flat_old.get(k) != flat_new.get(k)
    ]
