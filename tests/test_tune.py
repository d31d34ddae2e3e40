"""`jiyi tune`: the search space and its errors, budgets, the pruning hook, and studies on the
tiny model (trials as run folders, best/, trials.csv, tune.html, resuming, a pruned trial)."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from jiyi.config import TrainConfig
from jiyi.errors import JiyiError
from jiyi.tune.space import Param, default_space, parse_space
from jiyi.tune.study import (
    TrialHook,
    TuneOptions,
    metric_direction,
    parse_duration,
    run_tune,
)

optuna = pytest.importorskip("optuna")

SPACE = """\
lr: loguniform(1e-5, 3e-4)
batch_size: [16, 32]
epochs: int(1, 4)
warmup_ratio: uniform(0, 0.2)
dropout: [null, 0.1]
"""


def test_space_parses_ranges_and_choices_typed_for_their_flags() -> None:
    params = {p.name: p for p in parse_space(SPACE, "space.yaml", TrainConfig())}
    assert [(p.kind, p.low, p.high, p.line) for p in params.values() if p.kind != "choice"] == [
        ("loguniform", 1e-5, 3e-4, 1),
        ("int", 1, 4, 3),
        ("uniform", 0.0, 0.2, 4),
    ]
    assert params["batch_size"].choices == (16, 32)
    assert params["dropout"].choices == (None, 0.1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        values = {name: p.suggest(trial) for name, p in params.items()}
        assert 1e-5 <= values["lr"] <= 3e-4
        assert values["batch_size"] in (16, 32)
        assert isinstance(values["epochs"], float) and values["epochs"].is_integer()  # float flag
        assert 1 <= values["epochs"] <= 4
        TrainConfig(**values)  # a valid setting of jiyi train
        study.tell(trial, 0.5)


def test_space_reads_dashed_keys_and_numbers_yaml_leaves_as_text() -> None:
    (p,) = parse_space("--warmup-ratio: [0, 0.1]\n", "s.yaml", TrainConfig())
    assert (p.name, p.choices) == ("warmup_ratio", (0.0, 0.1))
    (p,) = parse_space("lr: [1e-5, 3e-5]\n", "s.yaml", TrainConfig())  # YAML 1.1: 1e-5 is text
    assert p.choices == (1e-5, 3e-5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr: loguniform(1e-5, 3e-4)\nlearning_rate: uniform(0, 1)\n",
         "line 2: learning_rate is not a `jiyi train` flag"),
        ("warmup_ratio: uniform(0.1, 0.1)\n", "line 1: warmup_ratio: uniform(0.1, 0.1) is empty"),
        ("lr: loguniform(3e-4, 1e-5)\n", "line 1: lr: loguniform(3e-4, 1e-5) is inverted"),
        ("epochs: int(4, 1)\n", "line 1: epochs: int(4, 1) is inverted"),
        ("batch_size: []\n", "line 1: batch_size: [] is empty"),
        ("batch_size: uniform(8, 32)\n", "--batch-size takes whole numbers"),
        ("batch_size: [16, big]\n", "'big' is not a value of --batch-size"),
        ("truncation: uniform(0, 1)\n", "--truncation takes text"),
        ("l1_prox: [yes, 3]\n", "3 is not a value of --l1-prox"),
        ("epochs: int(1.5, 3)\n", "whole-number ends"),
        ("warmup_ratio: uniform(0, 1.5)\n", "--warmup-ratio must be in [0, 1), got 1.5"),
        ("batch_size: [0, 16]\n", "--batch-size must be at least 1, got 0"),
        ("truncation: [head, middle]\n", "--truncation must be one of"),
        ("lr: loguniform(0, 1e-3)\n", "a log range needs ends above 0"),
        ("lr: normal(0, 1)\n", "unknown range normal(...)"),
        ("lr: 0.001\n", "a fixed value is a flag"),
        ("output: [a, b]\n", "output cannot be searched"),
        ("metric: [accuracy, f1_macro]\n", "metric cannot be searched"),
        ("lr: [1e-5]\nlr: [2e-5]\n", "line 2: lr is given twice (first on line 1)"),
        ("- lr\n", "expected a mapping"),
        ("", "the space is empty"),
        ("lr: [1e-5, 1e-5]\n", "repeats a value"),
    ],
)  # fmt: skip
def test_bad_spaces_name_the_key_and_the_line(text: str, expected: str) -> None:
    with pytest.raises(JiyiError) as e:
        parse_space(text, "space.yaml", TrainConfig())
    assert str(e.value).startswith("--space space.yaml")
    assert expected in str(e.value)


def test_default_space_follows_the_task_preset_and_leaves_out_given_flags(
    tiny_model_dir: Path,
) -> None:
    config = TrainConfig(model=str(tiny_model_dir))
    params = {p.name: p for p in default_space(config, set())}
    assert set(params) == {"lr", "batch_size", "warmup_ratio", "weight_decay"}
    # a small model (hidden 32): classification's preset lr is 5e-5, searched from /4 to x4
    assert (params["lr"].low, params["lr"].high) == pytest.approx((1.25e-5, 2e-4))
    ner = {
        p.name: p for p in default_space(TrainConfig(model=str(tiny_model_dir), task="ner"), set())
    }
    assert (ner["lr"].low, ner["lr"].high) == pytest.approx((2.5e-5, 4e-4))  # ner: 1e-4
    assert "batch_size" not in {p.name for p in default_space(config, {"batch_size"})}
    # the written default space reads back as the same parameters
    from jiyi.tune.space import space_yaml

    again = parse_space(space_yaml(list(params.values())), "space.yaml", config)
    assert [(p.name, p.kind, p.low, p.high, p.choices) for p in again] == [
        (p.name, p.kind, p.low, p.high, p.choices) for p in params.values()
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45)]
)
def test_budget_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30x", "", "m", "-5", "0s", "30 minutes", "1h junk"])
def test_bad_budget_is_named(text: str) -> None:
    with pytest.raises(JiyiError, match="--budget"):
        parse_duration(text)


def test_direction_follows_the_metric() -> None:
    assert metric_direction("accuracy") == "maximize"
    assert metric_direction("log_loss") == "minimize"
    assert metric_direction("loss", "minimize") == "minimize"
    with pytest.raises(JiyiError, match="--direction maximize contradicts --metric ece"):
        metric_direction("ece", "maximize")


def test_trial_hook_prunes_below_the_median_and_stops_at_the_budget() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    first = study.ask()
    hook = TrialHook(first, "accuracy")
    assert hook(10, {"accuracy": 0.8}) is None  # no earlier trial: nothing to compare with
    assert hook(20, {"accuracy": 0.9}) is None
    study.tell(first, 0.9)
    good, bad = study.ask(), study.ask()
    assert TrialHook(good, "accuracy")(10, {"accuracy": 0.85}) is None
    bad_hook = TrialHook(bad, "accuracy")
    reason = bad_hook(10, {"accuracy": 0.5})
    assert reason == "pruned by the median pruner at validation pass 1 (accuracy 0.5000)"
    assert bad.storage.get_trial(bad._trial_id).intermediate_values == {1: 0.5}
    late = TrialHook(study.ask(), "accuracy", deadline=time.monotonic() - 1)
    assert "the --budget is spent" in (late(10, {"accuracy": 0.95}) or "")


# ---------------------------------------------------------------------------------------------
# studies on the tiny model

TRIAL_FLAGS = ["--epochs", "2", "--max-length", "32", "--seed", "0", "--threads", "1"]


def tune_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "--model", str(model), "--train", str(data / "train.csv"),
            "--validation", str(data / "validation.csv"), "--output", str(out),
            *TRIAL_FLAGS, *extra]  # fmt: skip


def read_trials(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_study_writes_trials_best_table_and_page_and_resumes(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-3, 5e-3)\nbatch_size: [16, 32]\n")
    out = tmp_path / "tune"
    argv = tune_argv(tiny_model_dir, tiny_data_dir, out, "--space", str(space))
    assert main([*argv, "--trials", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == {"complete": 3}
    assert {p.name for p in out.iterdir()} >= {
        "study.db", "tune.json", "space.yaml", "trials", "best", "trials.csv", "tune.html"
    }  # fmt: skip
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["000", "001", "002"]
    rows = read_trials(out)
    assert list(rows[0])[:5] == ["trial", "state", "lr", "batch_size", "value"]
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    for r in rows:
        trial_dir = out / "trials" / f"{int(r['trial']):03d}"
        saved = json.loads((trial_dir / "trial.json").read_text())
        assert saved["state"] == r["state"] == "complete"
        assert saved["value"] == pytest.approx(float(r["value"]))
        assert 1e-3 <= float(r["lr"]) <= 5e-3 and r["batch_size"] in ("16", "32")
        # each trial is a real run: its config.yaml holds the trial's values
        config = (trial_dir / "config.yaml").read_text()
        assert f"batch_size: {r['batch_size']}" in config
        assert (trial_dir / "model" / "model.safetensors").is_file()
    values = [float(r["value"]) for r in rows]
    best = summary["best"]
    assert best["value"] == max(values)
    assert (out / "best").resolve() == (out / "trials" / f"{best['trial']:03d}").resolve()
    page = (out / "tune.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "<script" not in page and not re.findall(r'(?:src|href)="(?!data:)', page)  # offline
    # best/ is a run predict accepts
    (tmp_path / "in.txt").write_text("the film was great\nawful boring plot\n")
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out / "best"), "--input", str(tmp_path / "in.txt"),
                 "--output", str(pred)]) == 0  # fmt: skip
    assert len(pred.read_text().splitlines()) == 2

    # a larger --trials continues the same study: new trial numbers only
    before = (out / "tune.json").read_text()
    assert main([*argv, "--trials", "4"]) == 0
    rows = read_trials(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["000", "001", "002", "003"]
    assert (out / "tune.json").read_text() == before
    # the space was saved: a rerun without --space searches the same one
    assert main([*tune_argv(tiny_model_dir, tiny_data_dir, out), "--trials", "4"]) == 0
    assert len(read_trials(out)) == 4
    # other training settings are refused, naming what changed
    capsys.readouterr()
    assert main([*argv, "--trials", "5", "--weight-decay", "0.5"]) == 2
    assert "weight_decay: 0.01 there, 0.5 now" in capsys.readouterr().err


class PruneAfterTheFirst(optuna.pruners.BasePruner):
    """Every trial but the first is pruned at its first validation pass."""

    def prune(self, study: Any, trial: Any) -> bool:
        return trial.number > 0


def test_a_pruned_trial_stops_early_and_keeps_its_folder_marked(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jiyi.tune.study.make_pruner", lambda name, startup: PruneAfterTheFirst())
    config = TrainConfig(
        model=str(tiny_model_dir),
        train=str(tiny_data_dir / "train.csv"),
        validation=str(tiny_data_dir / "validation.csv"),
        output=str(tmp_path / "tune"),
        epochs=2,
        evals_per_epoch=2,
        max_length=32,
        threads=1,
        seed=0,
    )
    space = tmp_path / "space.yaml"
    space.write_text("lr: [2e-3, 3e-3]\n")
    summary = run_tune(config, TuneOptions(trials=2, space=str(space)))
    assert summary["trials"] == {"complete": 1, "pruned": 1}
    out = tmp_path / "tune"
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["complete", "pruned"]
    assert "pruned by the median pruner at validation pass 1" in rows[1]["note"]
    pruned = out / "trials" / "001"
    assert json.loads((pruned / "trial.json").read_text())["state"] == "pruned"
    assert (pruned / "model" / "config.json").is_file()  # the best model it reached
    events = [json.loads(x) for x in (pruned / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 1  # stopped at its first validation pass
    (stopped,) = [e for e in events if e["event"] == "stopped"]
    assert stopped["step"] == evals[0]["step"] and stopped["reason"] == rows[1]["note"]
    assert int(rows[1]["steps"]) < int(rows[0]["steps"])
    assert (out / "best").resolve() == (out / "trials" / "000").resolve()


def test_a_spent_budget_stops_the_trial_in_flight_and_starts_no_other(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.cli import main

    out = tmp_path / "tune"
    argv = tune_argv(tiny_model_dir, tiny_data_dir, out, "--trials", "5", "--budget", "0.01s",
                     "--evals-per-epoch", "2", "--lr", "3e-3")  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == {"pruned": 1} and "best" not in summary
    (row,) = read_trials(out)
    assert row["state"] == "pruned" and "the --budget is spent" in row["note"]
    assert not (out / "best").exists()
    # the default space was searched, less the --lr given
    assert (out / "space.yaml").read_text().splitlines()[1:] == [
        "batch_size: [16, 32]", "warmup_ratio: uniform(0, 0.2)", "weight_decay: [0.0, 0.01, 0.1]"
    ]  # fmt: skip


def test_cli_errors_name_the_space_file_and_the_missing_extra(
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jiyi.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-5, 3e-4)\nbatch_size: uniform(8, 64)\n")
    out = tmp_path / "tune"
    assert main(tune_argv(tiny_model_dir, tiny_data_dir, out, "--space", str(space))) == 2
    err = capsys.readouterr().err
    assert f"--space {space} line 2: batch_size: uniform(8, 64)" in err
    assert not (out / "study.db").exists()
    space.write_text("lr: loguniform(1e-5, 3e-4)\n")
    assert (
        main(tune_argv(tiny_model_dir, tiny_data_dir, out, "--space", str(space), "--lr", "1e-4"))
        == 2
    )
    assert "lr is searched and also given as a flag (--lr)" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)
    assert main(tune_argv(tiny_model_dir, tiny_data_dir, out)) == 2
    assert "pip install 'jiyi[tune]'" in capsys.readouterr().err


def test_three_failed_trials_in_a_row_stop_the_study_with_the_last_error(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.cli import main

    out = tmp_path / "tune"
    argv = tune_argv(tiny_model_dir, tiny_data_dir, out, "--text-column", "body", "--trials", "5")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "3 trials in a row failed; the last: " in err and "body" in err
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["fail"] * 3 and "body" in rows[0]["note"]
    assert not (out / "best").exists()


def test_a_trial_whose_process_was_killed_is_marked_failed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from jiyi.tune.study import fail_dead_trials, worker_id

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="jiyi-tune", storage=storage)
    killed, alive = study.ask(), study.ask()
    killed.set_user_attr("worker", worker_id(gone.pid))
    killed.set_user_attr("run_dir", "trials/000")
    alive.set_user_attr("worker", worker_id())  # this process: still running
    assert fail_dead_trials(storage, study, tmp_path) == [0]
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "RUNNING"]
    saved = json.loads((tmp_path / "trials" / "000" / "trial.json").read_text())
    assert saved["state"] == "fail" and saved["note"] == "its process was killed"


def test_param_yaml_round_trip() -> None:
    p = Param("dropout", "choice", 0, "", choices=(None, 0.1))
    assert p.yaml() == "dropout: [null, 0.1]"
    assert Param("lr", "loguniform", 0, "", 1e-5, 3e-4).yaml() == "lr: loguniform(1e-05, 0.0003)"
