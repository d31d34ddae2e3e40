"""`jiyi tune`'s study: Optuna (TPE, seeded) over `jiyi train` settings, every trial a real run.

    OUTPUT/
      study.db      the Optuna study (SQLite): rerunning resumes it; several processes share it
      tune.json     what the study was made with (metric, direction, space, training settings)
      space.yaml    the space searched
      trials/NNN/   one `jiyi train` run folder per trial, with trial.json (state, params, value)
      best -> trials/NNN   the best completed trial (a symlink; a copy where links fail)
      trials.csv, tune.html   the table and the page (`jiyi.tune.report`)

A trial is pruned through the loop's validation passes (`jiyi.loop.evaluation_hook`): after
the k-th pass the trial reports its --metric at step k (k counts passes, not optimizer steps,
so trials with other batch sizes compare at the same point of training) and the pruner may
stop it; its folder stays, a complete run of the best model it reached, marked pruned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi.config import TrainConfig
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_json, atomic_write_text, output_folder
from jiyi.tune.space import Param, default_space, parse_space, read_space, space_yaml

STUDY_NAME = "jiyi-tune"
PRUNERS = ("median", "halving", "none")
# settings that do not change a trial's result: a study may continue with other values
NOT_COMPARED = (
    "output",
    "resume",
    "threads",
    "log_every",
    "save_steps",
    "keep_checkpoints",
    "keep_final_checkpoint",
    "eval_batch_size",
)
FAILURES_IN_A_ROW = 3  # the study stops when this many trials fail one after another


@dataclass
class TuneOptions:
    """The search's own settings (the training settings are a TrainConfig)."""

    trials: int | None = None
    """Trials the study holds when done (finished, pruned or failed), counting earlier calls'."""
    budget: float | None = None
    """Seconds this call may spend; no trial starts after, the one in flight stops early."""
    space: str | None = None
    """A YAML space file; None: the study's saved space.yaml, or the task's default space."""
    pruner: str = "median"
    direction: str | None = None
    startup_trials: int = 5
    """Trials sampled at random (TPE) and finished before the median pruner prunes."""


def parse_duration(text: str, flag: str = "--budget") -> float:
    """Seconds of a duration: 90s, 30m, 2h, 1h30m, or a plain number of seconds.

    >>> parse_duration("90s"), parse_duration("30m"), parse_duration("1h30m"), parse_duration("45")
    (90.0, 1800.0, 5400.0, 45.0)
    """
    import re

    raw = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(raw)
    except ValueError:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", raw)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd])", "", raw).strip():
            raise JiyiError(
                f"{flag} {text!r}: expected a duration such as 90s, 30m, 2h or 1h30m."
            ) from None
        seconds = sum(float(n) * units[u] for n, u in parts)
    if not seconds > 0 or not math.isfinite(seconds):
        raise JiyiError(f"{flag} {text!r}: the duration must be positive.")
    return seconds


def metric_direction(metric: str, given: str | None = None) -> str:
    """maximize or minimize `metric` as the runs do (`jiyi.evaluate.metric_is_better`: loss,
    ece, perplexity are minimised); a --direction against that is refused."""
    from jiyi.evaluate import metric_is_better

    inferred = "minimize" if metric_is_better(metric, 0.0, 1.0) else "maximize"
    if given is not None and given != inferred:
        raise JiyiError(
            f"--direction {given} contradicts --metric {metric}: each trial keeps the model with "
            f"the {'lowest' if inferred == 'minimize' else 'highest'} {metric}, so the study must "
            f"{inferred} it."
        )
    return inferred


def make_pruner(name: str, startup_trials: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "halving":  # rungs at validation passes 1, 3, 9, ...
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise JiyiError(f"--pruner must be one of {', '.join(PRUNERS)}; got {name!r}.")


class TrialHook:
    """A trial's `on_evaluate`: report --metric at each validation pass, stop the run when the
    pruner says so or the --budget is spent (the reason is kept in `reason`)."""

    def __init__(
        self, trial: Any, metric: str, deadline: float | None = None, pruner: str = "median"
    ) -> None:
        self.trial, self.metric, self.deadline, self.pruner = trial, metric, deadline, pruner
        self.passes = 0
        self.reason: str | None = None

    def __call__(self, step: int, metrics: dict[str, float]) -> str | None:
        self.passes += 1
        value = metrics.get(self.metric)
        shown = "undefined"
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), self.passes)
            shown = f"{value:.4f}"
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = f"the --budget is spent (validation {self.metric} {shown})"
        elif self.trial.should_prune():
            self.reason = (
                f"pruned by the {self.pruner} pruner at validation pass {self.passes} "
                f"({self.metric} {shown})"
            )
        return self.reason


class TrialFailed(Exception):
    """A trial's `jiyi train` failed with a user-level error (kept in the trial, the study goes
    on; FAILURES_IN_A_ROW in a row stop it)."""


def run_tune(
    config: TrainConfig,
    options: TuneOptions,
    console: Any = None,
    explicit: set[str] = frozenset(),
) -> dict[str, Any]:
    """Run (or continue) the study in `config.output`; returns a summary (trials by state, the
    best trial, the files written)."""
    import optuna
    from rich.console import Console

    from jiyi.loop import StoppedBySignal
    from jiyi.train import train
    from jiyi.tune.report import write_reports

    console = console or Console(stderr=True, soft_wrap=True)
    if not config.train or not config.output:
        raise JiyiError("--train and --output are required: the training data and the folder "
                        "for the study and its trials.")  # fmt: skip
    assert config.metric is not None
    out = output_folder(config.output)
    direction = metric_direction(config.metric, options.direction)
    pruner = make_pruner(options.pruner, options.startup_trials)
    if options.trials is not None and options.trials < 1:
        raise JiyiError(f"--trials must be at least 1, got {options.trials}.")
    if options.startup_trials < 0:
        raise JiyiError(f"--startup-trials must be >= 0, got {options.startup_trials}.")
    target = options.trials if options.trials is not None or options.budget else 20
    space, text = resolve_space(config, options, out, explicit)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # jiyi says what happens
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with setup_lock(out):  # several processes starting at once make one study
        check_same_study(out, config, direction, text, [p.name for p in space])
        if not (out / "space.yaml").is_file():
            atomic_write_text(out / "space.yaml", text)
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(out / 'study.db').absolute()}",
            engine_kwargs={"connect_args": {"timeout": 60}},
            heartbeat_interval=60,
            grace_period=180,
        )
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            direction=direction,
            pruner=pruner,
            load_if_exists=True,
        )
    optuna.storages.fail_stale_trials(study)  # no heartbeat for 3 minutes: failed
    fail_dead_trials(storage, study, out)  # a killed process of this machine: failed now
    held = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + held, n_startup_trials=options.startup_trials
    )
    remaining = None if target is None else max(0, target - held)
    if held:
        console.print(f"Study {out / 'study.db'}: {held} trials already; continuing.")
    t0 = time.monotonic()
    deadline = None if options.budget is None else t0 + options.budget
    failures: list[str] = []
    written: list[Path] = []
    trials_dir = out / "trials"

    def objective(trial: Any) -> float:
        params = {p.name: p.suggest(trial) for p in space}
        run_dir = trials_dir / f"{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir.relative_to(out)))
        trial.set_user_attr("worker", worker_id())
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        of = f" of {target}" if target is not None else ""
        console.rule(f"trial {trial.number} ({trial.number + 1}{of}): {shown}")
        hook = TrialHook(trial, config.metric, deadline, options.pruner)  # type: ignore[arg-type]
        trial_config = dataclasses.replace(config, output=str(run_dir), resume=False, **params)
        started = time.perf_counter()
        try:
            summary = train(trial_config, console, explicit | set(params), on_evaluate=hook)
        except StoppedBySignal:
            seconds = time.perf_counter() - started
            trial.set_user_attr("seconds", seconds)
            trial.set_user_attr("note", "stopped by a signal")
            mark_trial(run_dir, trial, "fail", params, None, seconds, note="stopped by a signal")
            raise
        except JiyiError as e:
            seconds = time.perf_counter() - started
            trial.set_user_attr("seconds", seconds)
            trial.set_user_attr("note", str(e))
            mark_trial(run_dir, trial, "fail", params, None, seconds, note=str(e))
            failures.append(str(e))
            console.print(f"[red]trial {trial.number} failed: {e}[/]")
            raise TrialFailed(str(e)) from None
        finally:
            free_memory()
        failures.clear()
        seconds = time.perf_counter() - started
        value = summary.get("best_validation")
        for key, v in (("seconds", seconds), ("steps", summary.get("steps")),
                       ("best_step", summary.get("best_step")), ("best_value", value)):  # fmt: skip
            trial.set_user_attr(key, v)
        if hook.reason:
            trial.set_user_attr("note", hook.reason)
            mark_trial(run_dir, trial, "pruned", params, value, seconds, note=hook.reason)
            raise optuna.TrialPruned(hook.reason)
        if value is None or not math.isfinite(value):
            note = f"validation {config.metric} undefined"
            trial.set_user_attr("note", note)
            mark_trial(run_dir, trial, "fail", params, None, seconds, note=note)
            failures.append(note)
            raise TrialFailed(note)
        mark_trial(run_dir, trial, "complete", params, value, seconds)
        return float(value)

    def after_trial(study: Any, frozen: Any) -> None:
        write_reports(study, out, space, config.metric, html=False)
        if frozen.state.name == "COMPLETE":
            best = study.best_trial
            console.print(
                f"trial {frozen.number}: {config.metric} {frozen.value:.4f} "
                f"(best: trial {best.number}, {best.value:.4f})"
            )
        if len(failures) >= FAILURES_IN_A_ROW:
            study.stop()
        elif target is not None and len(study.get_trials(deepcopy=False)) >= target:
            study.stop()  # other processes' trials count too

    try:
        if remaining != 0:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=options.budget,
                catch=(TrialFailed,),
                callbacks=[after_trial],
                gc_after_trial=True,
            )
    except StoppedBySignal as e:  # Ctrl-C or SIGTERM stopped the trial in flight
        raise JiyiError(
            f"{e.args[0].split(';')[0]} in a trial of the study. Rerun the same `jiyi tune` "
            f"command to continue the study in {out} (that trial counts as failed)."
        ) from None
    finally:
        if study.get_trials(deepcopy=False):
            written = write_reports(study, out, space, config.metric, html=True)
    if len(failures) >= FAILURES_IN_A_ROW:
        raise JiyiError(
            f"{FAILURES_IN_A_ROW} trials in a row failed; the last: {failures[-1]} "
            f"(each trial's folder is under {trials_dir})."
        )
    return summarize(study, out, config.metric, direction, time.monotonic() - t0, written)


def resolve_space(
    config: TrainConfig, options: TuneOptions, out: Path, explicit: set[str]
) -> tuple[list[Param], str]:
    """The space to search and its YAML text: --space, else the study's space.yaml, else the
    task's default (a space key also given as a flag is refused: one or the other)."""
    if options.space is not None:
        space, text = read_space(options.space, config)
        source = f"--space {options.space}"
    elif (out / "space.yaml").is_file():
        saved = out / "space.yaml"
        text = saved.read_text("utf-8")
        space, source = parse_space(text, str(saved), config), str(saved)
    else:
        space = default_space(config, explicit)
        if not space:
            raise JiyiError(
                "Every setting of the default space is given as a flag; nothing is left to "
                "search. Give a --space FILE."
            )
        return space, "# the default space of jiyi tune for this task and model\n" + space_yaml(
            space
        )
    for p in space:
        if p.name in explicit:
            raise JiyiError(
                f"{source} line {p.line}: {p.name} is searched and also given as a flag "
                f"(--{p.name.replace('_', '-')}); drop one of them."
            )
    return space, text


def study_settings(
    config: TrainConfig, direction: str, space_text: str, names: list[str]
) -> dict[str, Any]:
    training = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in NOT_COMPARED and k not in names
    }
    for key in ("train", "validation", "model"):
        value = training.get(key)
        if value and Path(value).exists():
            training[key] = str(Path(value).resolve())
    return {"metric": config.metric, "direction": direction, "space": space_text,
            "training": training}  # fmt: skip


def check_same_study(
    out: Path, config: TrainConfig, direction: str, space_text: str, names: list[str]
) -> None:
    """Write OUTPUT/tune.json for a new study; refuse to continue one made otherwise."""
    settings = study_settings(config, direction, space_text, names)
    saved = out / "tune.json"
    if not saved.is_file():
        if (out / "study.db").exists() or (out / "trials").exists():
            raise JiyiError(
                f"--output {out} holds trials but no tune.json; choose another --output."
            )
        if out.exists() and any(p.name != ".tune.lock" for p in out.iterdir()):
            raise JiyiError(
                f"--output {out} already exists and is not a jiyi tune study; choose another "
                "--output."
            )
        atomic_write_json(saved, settings)
        return
    from jiyi.resume import differing_settings

    old = json.loads(saved.read_text("utf-8"))
    if diffs := differing_settings(old, settings):
        raise JiyiError(
            f"--output {out} holds a study made with other settings ({'; '.join(diffs[:4])}). "
            "Rerun with the same settings to continue it, or choose another --output."
        )


@contextlib.contextmanager
def setup_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on OUTPUT/.tune.lock (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".tune.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_trial(
    run_dir: Path,
    trial: Any,
    state: str,
    params: dict[str, Any],
    value: float | None,
    seconds: float,
    note: str = "",
) -> None:
    """RUN_DIR/trial.json: the trial's number, state (complete, pruned, fail), params, value."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run_dir / "trial.json",
        {"trial": trial.number, "state": state, "params": params, "value": value,
         "seconds": round(seconds, 3), "note": note},
    )  # fmt: skip


def summarize(
    study: Any, out: Path, metric: str, direction: str, seconds: float, written: list[Path]
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    summary: dict[str, Any] = {
        "output": str(out),
        "metric": metric,
        "direction": direction,
        "trials": counts,
        "seconds": round(seconds, 1),
        "written": [str(p) for p in written],
    }
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        best = study.best_trial
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": str(out / "best"),
        }
    return summary


def worker_id(pid: int | None = None) -> str:
    """This process as `host:pid`, stored with each trial it runs."""
    import socket

    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def fail_dead_trials(storage: Any, study: Any, out: Path) -> list[int]:
    """Mark failed the running trials whose process, on this machine, is gone (killed); those
    of other machines wait for their heartbeat to go stale. Returns their numbers."""
    import socket

    from optuna.trial import TrialState

    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "note", "its process was killed")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        run_dir = out / t.user_attrs.get("run_dir", f"trials/{t.number:03d}")
        mark_trial(run_dir, t, "fail", t.params, None, 0.0, note="its process was killed")
        dead.append(t.number)
    return dead


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (POSIX; elsewhere assumed alive: the heartbeat decides)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only checked
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


def free_memory() -> None:
    """Between trials: the last model's tensors go (and the GPU cache, where there is one)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
