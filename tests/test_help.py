"""Help that guides (issue 18): grouped verbs, grouped train flags with their choices and no
"(default: None)", the verb's own usage and a close match for a misspelt flag or verb, one
meaning of --config, and no error message that suggests a flag its verb lacks."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from conftest import make_texts, train_argv
from jiyi.cli import build_parser, main
from jiyi.cli_help import VERB_GROUPS, ungrouped_verbs
from jiyi.config import FLAG_GROUPS, PretrainConfig, TrainConfig, help_group_of
from jiyi.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "jiyi"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser, nested ones as "memory build"."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        verbs = getattr(parser, "verbs", None)
        for name, sub in (verbs.choices if verbs else {}).items():
            found[f"{prefix}{name}"] = sub
            walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return found


def test_top_help_groups_every_verb_once(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0
    verbs = build_parser().verbs
    assert verbs is not None and ungrouped_verbs(verbs) == []
    listed = [v for names in VERB_GROUPS.values() for v in names]
    assert len(listed) == len(set(listed)), "a verb in two groups"
    assert set(verbs.choices) <= set(listed)
    for group in ("train & evaluate:", "inspect:", "memory:", "shrink & serve:", "form:"):
        assert f"\n  {group}\n" in out
    for name in verbs.choices:  # one line each, under its group
        assert re.search(rf"^    {re.escape(name)} +\S", out, re.M), name


def test_train_help_in_groups_with_choices_and_no_default_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run(["train", "--help"], capsys)
    assert rc == 0
    titles = [line for line in out.splitlines() if line and not line[0].isspace()]
    order = [t for t in titles if t.endswith(":")]
    assert order[:5] == [
        "options:",
        "common (what to train on, where the run goes):",
        "data (columns, file format, lengths):",
        "optimisation (steps, learning rate, evaluation, checkpoints):",
        "regularisation and augmentation:",
    ]
    for task in ("multilabel", "ner", "qa", "seq2seq"):  # one group per task with own flags
        assert f"--task {task}:" in order
    assert order[-1] == "examples:"
    assert "(default: None)" not in out
    for shown in (
        "--task {classification,multilabel,ner,qa,seq2seq}",
        "--truncation {head,tail,head+tail}",
        "--on-bad-rows {error,skip}",
        "--tag-scheme {BIO,BIOES}",
    ):
        assert shown in out, shown
    # --output is in the common group, far before the task flags (it was on line 174)
    assert out.index("--output RUN_DIR") < out.index("data (columns")
    assert out.index("--num-beams") > out.index("--task seq2seq:")
    assert out.index("--tokens-column") > out.index("--task ner:")


@pytest.mark.parametrize("verb", ["train", "curve", "pretrain"])
def test_dataclass_verbs_have_no_default_none(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run([verb, "--help"], capsys)
    assert rc == 0 and "(default: None)" not in out
    assert "common (what to train on, where the run goes):" in out
    assert "--config FILE.yaml" in out


def test_every_field_has_one_help_group() -> None:
    task_flags = {n for spec in TASKS.values() for n in spec.own_flags + spec.help_flags}
    grouped = [n for names in FLAG_GROUPS.values() for n in names]
    assert len(grouped) == len(set(grouped)), "a field in two FLAG_GROUPS"
    assert not (set(grouped) & task_flags), "a task's flag also in a common group"
    for cls in (TrainConfig, PretrainConfig):
        for f in dataclasses.fields(cls):
            help_group_of(f.name)  # KeyError names the field without a group


def test_unknown_flag_prints_the_verbs_usage_and_a_close_match(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run(["train", "--epoch", "3"], capsys)
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("usage: jiyi train --train FILE")
    assert lines[1].startswith("jiyi train: error: unknown flag --epoch; did you mean --epochs?")
    assert len(lines) == 2 and "Traceback" not in err


def test_unknown_flag_of_another_verb(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["evaluate", "runs/x", "--data", "d.csv", "--ouptut", "o"], capsys)
    assert rc == 2
    assert err.splitlines()[0].startswith("usage: jiyi evaluate")
    assert "unknown flag --ouptut; did you mean --output?" in err


def test_misspelt_verb_and_choice(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["trian"], capsys)
    assert rc == 2
    assert "jiyi: error: unknown verb 'trian'; did you mean train?" in err
    rc, _, err = run(["memory", "biuld"], capsys)
    assert rc == 2 and "unknown action 'biuld'; did you mean build?" in err
    rc, _, err = run(["train", "--task", "clasification"], capsys)
    assert rc == 2 and "did you mean classification?" in err
    rc, _, err = run(["xyzzy"], capsys)
    assert rc == 2 and "did you mean" not in err


def test_config_is_the_yaml_file_in_every_verb() -> None:
    for name, parser in verb_parsers().items():
        for action in parser._actions:
            if "--config" in action.option_strings:
                assert action.metavar == "FILE.yaml", name


def test_pretrain_old_spellings_still_work_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --config tiny (the architecture) -> --architecture tiny; stops at the missing corpus
    rc, _, err = run(
        ["pretrain", "--corpus", str(tmp_path / "none.txt"), "--config", "tiny",
         "--output", str(tmp_path / "run")],
        capsys,
    )  # fmt: skip
    assert rc == 2
    assert "--config tiny as the architecture is deprecated; use --architecture tiny" in err
    assert "--tokenizer is required from scratch" in err  # the architecture was understood
    settings = tmp_path / "s.yaml"
    settings.write_text("mask_rate: 2.0\n")
    rc, _, err = run(["pretrain", "--settings", str(settings)], capsys)
    assert rc == 2 and "--settings is deprecated" in err and "--mask-rate" in err


def test_flags_named_in_messages_exist() -> None:
    """Every `--flag` a source string names (error advice, help) is a flag of some verb."""
    flags = {s for p in verb_parsers().values() for a in p._actions for s in a.option_strings}
    flags |= {"--help", "--version", "--no-deps", "--force-reinstall"}  # argparse, pip
    flags |= {"--max-iterations"}  # python -m jiyi.ner.crf, a script of its own
    flags |= {"--epoch"}  # cli_help's example of a misspelt flag
    missing: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        for literal in re.findall(
            r"(?s)(\"\"\".*?\"\"\"|\"[^\"\n]*\"|'[^'\n]*')", path.read_text()
        ):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w{-])", literal):
                if flag not in flags:
                    missing.setdefault(flag, str(path.relative_to(SRC)))
    assert not missing, missing


@pytest.fixture(scope="module")
def semicolon_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("semicolon")
    for name, n, seed in (("train", 240, 2), ("validation", 60, 3), ("test", 60, 4)):
        lines = ["text;label"] + [f"{t};{label}" for t, label in make_texts(n, seed)]
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_semicolon_csv_trains_and_predicts(
    tiny_model_dir: Path,
    semicolon_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    rc, _, err = run(train_argv(tiny_model_dir, semicolon_data, out, "--max-steps", "2"), capsys)
    assert rc == 0, err
    texts = tmp_path / "in.csv"
    texts.write_text("id;text\n1;a good film\n2;a dull film\n", encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    rc, _, err = run(["predict", str(out), "--input", str(texts), "--output", str(preds)], capsys)
    assert rc == 0, err
    rows = preds.read_text().splitlines()
    assert len(rows) == 2 and '"text": "a good film"' in rows[0]
    # a wrong delimiter given on purpose is used, and the message says how to change it
    rc, _, err = run(
        ["evaluate", str(out), "--data", str(semicolon_data / "test.csv"), "--delimiter", "|"],
        capsys,
    )
    assert rc == 2
    assert "separated by '|'; pass --delimiter CHAR" in err and "Traceback" not in err
    rc, _, err = run(
        ["evaluate", str(out), "--data", str(semicolon_data / "test.csv"), "--delimiter", ";",
         "--output", str(tmp_path / "eval")],
        capsys,
    )  # fmt: skip
    assert rc == 0, err


def test_predict_on_a_bad_file_names_only_its_own_flags(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'text,label\nfine,pos\n"broken\xff text",neg\n')
    rc, _, err = run(["predict", str(trained_run), "--input", str(bad)], capsys)
    assert rc == 2 and "Fix or remove the row" in err
    named = set(re.findall(r"--[a-z][a-z-]+", err))
    accepted = set(verb_parsers()["predict"].flags())  # type: ignore[attr-defined]
    assert named <= accepted, named - accepted


def test_predict_one_string_gives_one_prediction(trained_run: Path) -> None:
    import jiyi

    clf = jiyi.load(str(trained_run))
    one = clf.predict("a good and moving film")
    assert isinstance(one, dict) and set(one) == {"label", "score", "probabilities"}
    many = clf.predict(["a good and moving film"])
    assert many == [one]
    with pytest.raises(TypeError):
        clf.predict(["a", "b"], "pair")
