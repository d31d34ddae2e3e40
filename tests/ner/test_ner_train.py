"""`jiyi train --task ner` end to end on a tiny model: it learns a synthetic tagging task, writes
entity-level metrics, and its folder loads as a token classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jiyi.cli import main


def test_ner_learns_and_writes_entity_metrics(ner_run: Path) -> None:
    out = ner_run
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["per_type"]) == {"PER", "LOC"}
    assert metrics["f1"] >= 0.9, metrics
    assert metrics["n"] == 60 and metrics["n_entities"] == sum(
        v["support"] for v in metrics["per_type"].values()
    )
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["task"] == "ner" and meta["scheme"] == "BIO"
    assert meta["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    events = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert events[0]["windows"]["test"] > 60  # long test sentences were windowed, not cut
    from transformers import AutoModelForTokenClassification

    loaded = AutoModelForTokenClassification.from_pretrained(out / "model")
    assert loaded.config.id2label[1] == "B-LOC"


def test_bioes_and_carved_validation(ner_setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = ner_setup
    out = tmp_path / "bioes"
    argv = ["train", "--task", "ner", "--model", str(model), "--train", str(data / "train.conll")]
    argv += ["--output", str(out), "--tag-scheme", "BIOES", "--max-steps", "3", "--batch-size", "8"]
    assert main(argv) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["scheme"] == "BIOES"
    assert {"S-PER", "E-LOC", "B-LOC", "I-LOC"} <= set(meta["labels"])
    start = json.loads((out / "metrics.jsonl").open().readline())
    assert start["n_train"] + start["n_validation"] == 300


def test_bad_ner_flags_are_named(
    ner_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = ner_setup
    argv = ["train", "--task", "ner", "--model", str(model), "--train", str(data / "train.conll")]
    assert main([*argv, "--output", str(tmp_path / "a"), "--tag-scheme", "IOB"]) == 2
    assert "--tag-scheme" in capsys.readouterr().err
    assert (
        main([*argv, "--output", str(tmp_path / "b"), "--stride", "40", "--max-length", "32"]) == 2
    )
    assert "--stride" in capsys.readouterr().err
    assert main([*argv, "--output", str(tmp_path / "c"), "--metric", "accuracy"]) == 2
    assert "--metric" in capsys.readouterr().err


def test_predict_gives_spans_with_exact_offsets(
    ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ner_run
    texts = ["the film with alice was in new york  and bob liked it", "Rio de Janeiro: carol!"]
    raw = tmp_path / "in.txt"
    raw.write_text("\n".join(texts) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(raw)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == texts
    for row in rows:
        for ent in row["entities"]:
            assert row["text"][ent["start"] : ent["end"]] == ent["text"]
            assert ent["type"] in {"PER", "LOC"} and 0 < ent["score"] <= 1
    found = {(e["text"], e["type"]) for r in rows for e in r["entities"]}
    assert {("alice", "PER"), ("bob", "PER")} <= found, found
    assert any("york" in text and kind == "LOC" for text, kind in found), found
    # pre-tokenised input: token indices, the tags of every token
    conll = tmp_path / "in.conll"
    conll.write_text("the\nfilm\nwith\nalice\nin\nparis\n", encoding="utf-8")
    assert main(["predict", str(out), "--input", str(conll)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["tokens"][3] == "alice" and len(row["tags"]) == 6
    assert {"start": 3, "end": 4, "text": "alice", "type": "PER"}.items() <= row["entities"][
        0
    ].items()


def test_evaluate_a_ner_run_matches_its_test_evaluation(
    ner_run: Path, ner_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    _, data = ner_setup
    out = ner_run
    at_training = json.loads((out / "eval" / "metrics.json").read_text())
    again = tmp_path / "again"
    assert (
        main(["evaluate", str(out), "--data", str(data / "test.conll"), "--output", str(again)])
        == 0
    )
    metrics = json.loads((again / "metrics.json").read_text())
    for key in ("f1", "precision", "recall", "token_accuracy", "per_type", "confusion"):
        assert metrics[key] == at_training[key], key
    assert metrics["repaired"] == 0
    errors = [json.loads(line) for line in (again / "errors.jsonl").open()]
    assert all(e["wrong"] >= 1 and len(e["gold"]) == len(e["predicted"]) for e in errors)
    assert [e["wrong"] for e in errors] == sorted((e["wrong"] for e in errors), reverse=True)


def test_ner_train_and_evaluate_write_an_html_report(
    ner_run: Path, ner_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    _, data = ner_setup
    out = ner_run
    files = {"metrics.json", "errors.jsonl", "confusion.png", "report.html"}
    assert {p.name for p in (out / "eval").iterdir()} == files
    page = (out / "eval" / "report.html").read_text("utf-8")
    assert "jiyi NER evaluation: " in page and "data:image/png;base64," in page
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    for kind, scores in metrics["per_type"].items():  # the per-type rows carry the metrics
        assert f'{kind}</td><td class="num">{scores["precision"]:.4f}</td>' in page
    again = tmp_path / "again"
    argv = ["evaluate", str(out), "--data", str(data / "test.conll"), "--output", str(again)]
    assert main(argv) == 0
    assert {p.name for p in again.iterdir()} == files
    assert "repaired tags" in (again / "report.html").read_text("utf-8")


def test_a_run_that_found_no_entity_says_what_to_do() -> None:
    from types import SimpleNamespace

    from jiyi.ner.train import no_entity_warning

    config = SimpleNamespace(epochs=5.0, lr=1e-3, max_steps=None)
    found_none = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_entities": 40}
    message = no_entity_warning(found_none, config)
    assert message is not None
    assert "none of the 40 entities" in message
    assert "--epochs above 5" in message and "--lr than 0.001" in message
    stepped = no_entity_warning(found_none, SimpleNamespace(epochs=1.0, lr=1e-3, max_steps=60))
    assert stepped is not None and "--max-steps above 60" in stepped
    assert no_entity_warning({**found_none, "recall": 0.025}, config) is None
    assert no_entity_warning({**found_none, "precision": 0.5}, config) is None
    assert no_entity_warning({**found_none, "n_entities": 0}, config) is None  # nothing to find
    assert no_entity_warning({}, config) is None  # no validation record: nothing to say


def test_the_warning_reaches_the_user_and_the_log_only_when_no_entity_was_found(
    ner_setup: tuple[Path, Path], ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = ner_setup
    sentences = (data / "train.conll").read_text().split("\n\n")
    untagged = (
        [sentences[0], sentences[1]]
        + [  # entities in one sentence, O everywhere else
            "\n".join(line.split("\t")[0] + "\tO" for line in s.splitlines()) for s in sentences[2:]
        ]
    )
    (tmp_path / "mostly-o.conll").write_text("\n\n".join(untagged))
    out = tmp_path / "all-o"
    argv = ["train", "--task", "ner", "--model", str(model), "--output", str(out)]
    argv += ["--train", str(tmp_path / "mostly-o.conll")]
    argv += ["--validation", str(data / "validation.conll"), "--max-steps", "60", "--lr", "1e-3"]
    assert main(argv) == 0
    assert "none of the" in capsys.readouterr().err
    events = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [e["event"] for e in events].count("warning") == 1
    learnt = [json.loads(line) for line in (ner_run / "metrics.jsonl").open()]
    assert all(e["event"] != "warning" for e in learnt)  # F1 >= 0.9: nothing to warn about
