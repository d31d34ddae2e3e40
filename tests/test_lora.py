"""`jiyi train --lora-r` (jiyi.lora, on peft) on the tiny models: what a LoRA run writes, that
only the adapters and the head change, that the merged model is base + adapter, that the
verbs read an unmerged run, resume, and the refusals."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import train_argv
from jiyi.cli import main
from jiyi.errors import JiyiError

pytest.importorskip("peft")

LORA = ["--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0.0"]


def short(argv: list[str], epochs: str = "2") -> list[str]:
    argv[argv.index("--epochs") + 1] = epochs
    return argv


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    assert main(short(train_argv(tiny_model_dir, tiny_data_dir, out, *LORA))) == 0
    return out


@pytest.fixture(scope="module")
def unmerged_run(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora-unmerged") / "run"
    argv = short(train_argv(tiny_model_dir, tiny_data_dir, out, *LORA, "--no-lora-merge"))
    assert main(argv) == 0
    return out


def test_a_lora_run_writes_the_adapter_and_a_merged_model(lora_run: Path) -> None:
    assert {p.name for p in (lora_run / "adapter").iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert (lora_run / "model" / "model.safetensors").is_file()
    meta = json.loads((lora_run / "model" / "jiyi.json").read_text())
    lora = meta["lora"]
    assert (lora["r"], lora["alpha"], lora["dropout"]) == (4, 8.0, 0.0)
    assert lora["targets"] == ["query", "value"] and lora["head"] == ["classifier"]
    assert lora["merged"] is True and lora["adapter"] == "adapter"
    # tiny BERT: hidden 32, 2 layers; LoRA A (4x32) + B (32x4) on query and value of each
    # layer = 2 x 2 x 256; the classifier 32 x 2 + 2
    assert lora["trainable_parameters"] == 2 * 2 * 256 + 66
    assert 0 < lora["trainable_parameters"] < lora["total_parameters"]
    # the merged folder is a plain BERT classifier: no peft names in it
    keys = load_file(str(lora_run / "model" / "model.safetensors"))
    assert not [k for k in keys if "lora" in k or "modules_to_save" in k or "base_model" in k]


def test_only_the_adapters_and_the_head_changed(lora_run: Path, tiny_model_dir: Path) -> None:
    base = {f"bert.{k}": v for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    merged = load_file(str(lora_run / "model" / "model.safetensors"))
    changed = {k for k in merged if k in base and not np.array_equal(base[k], merged[k])}
    # merging adds B @ A into the query and value weights; nothing else of the base moves
    assert changed == {
        f"bert.encoder.layer.{i}.attention.self.{m}.weight"
        for i in (0, 1)
        for m in ("query", "value")
    }
    assert {k for k in merged if k not in base} >= {"classifier.weight", "classifier.bias"}
    adapter = load_file(str(lora_run / "adapter" / "adapter_model.safetensors"))
    assert {k.split(".")[-2] for k in adapter if "lora_" in k} == {"lora_A", "lora_B"}
    assert any("classifier" in k for k in adapter)
    assert not any(".key." in k or "intermediate" in k for k in adapter)


def test_the_merged_model_predicts_as_base_plus_adapter(lora_run: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from jiyi.lora import load_unmerged
    from jiyi.models import load_classifier

    merged, tokenizer = load_classifier(lora_run / "model")
    enc = tokenizer(
        ["a good film", "dull and long", "great fun"], return_tensors="pt", padding=True
    )
    meta = json.loads((lora_run / "model" / "jiyi.json").read_text())
    joined = load_unmerged(lora_run / "model", {**meta["lora"], "merged": False})
    with torch.no_grad():
        a = merged(**enc).logits
        b = joined(**enc).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and not the untouched base with a fresh head: the adapter carries the training
    base = AutoModelForSequenceClassification.from_pretrained(
        meta["lora"]["base"], num_labels=a.shape[1]
    )
    unmerged = PeftModel.from_pretrained(base, str(lora_run / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(unmerged(**enc).logits, a, atol=1e-5, rtol=1e-5)


def test_an_unmerged_run_is_read_as_base_plus_adapter(
    unmerged_run: Path, lora_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    model_dir = unmerged_run / "model"
    assert not list(model_dir.glob("*.safetensors"))  # weights: the base's and the adapter's
    assert (unmerged_run / "adapter" / "adapter_model.safetensors").is_file()
    meta = json.loads((model_dir / "jiyi.json").read_text())
    assert meta["lora"]["merged"] is False and Path(meta["lora"]["base"]).is_dir()
    # same flags and seed as lora_run: the same training, so the same test metrics
    a = json.loads((lora_run / "eval" / "metrics.json").read_text())
    b = json.loads((unmerged_run / "eval" / "metrics.json").read_text())
    assert a["accuracy"] == b["accuracy"] and a["n"] == b["n"]
    # predict and evaluate read it unchanged
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(unmerged_run), "--input", str(tiny_data_dir / "test.csv"),
                 "--output", str(out)]) == 0  # fmt: skip
    assert len(out.read_text().splitlines()) == a["n"]
    assert main(["evaluate", str(unmerged_run), "--data", str(tiny_data_dir / "test.csv"),
                 "--output", str(tmp_path / "ev")]) == 0  # fmt: skip
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["accuracy"] == pytest.approx(b["accuracy"])
    # the encoder of the run (embed, memory, probe, drift): base + adapter, merged
    from jiyi.inspect.embeddings import load_encoder

    encoder = load_encoder(unmerged_run)
    merged_encoder = load_encoder(lora_run)
    for (k, v), (k2, v2) in zip(
        encoder.model.state_dict().items(), merged_encoder.model.state_dict().items(), strict=True
    ):
        assert k == k2
        np.testing.assert_allclose(v.numpy(), v2.numpy(), atol=1e-6, err_msg=k)


def test_an_unmerged_run_without_its_adapter_is_refused(unmerged_run: Path, tmp_path: Path) -> None:
    from jiyi.models import load_classifier

    copy = tmp_path / "copy"
    shutil.copytree(unmerged_run, copy)
    shutil.rmtree(copy / "adapter")
    with pytest.raises(JiyiError, match=r"adapter folder .* is missing"):
        load_classifier(copy / "model")


def test_a_killed_lora_run_resumes_to_the_same_model(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from test_train import run_cli, wait_for_checkpoint

    whole = tmp_path / "whole"
    assert main(short(train_argv(tiny_model_dir, tiny_data_dir, whole, *LORA), "3")) == 0
    out = tmp_path / "killed"
    argv = short(train_argv(tiny_model_dir, tiny_data_dir, out, *LORA, "--save-steps", "3"), "3")
    proc = run_cli(argv)
    wait_for_checkpoint(out, proc, min_step=20)  # 15 steps per epoch: mid-epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (out / "eval").exists()
    # the checkpoint holds only what trains: the adapters and the head, not the frozen base
    ckpt = sorted((out / "checkpoints").glob("step-*"))[-1]
    held = load_file(str(ckpt / "model.safetensors"))
    assert {k.split(".")[-3] for k in held if "lora_" in k} == {"lora_A", "lora_B"}
    assert sum(v.size for v in held.values()) == 2 * 2 * 256 + 66  # = trainable_parameters
    assert not [k for k in held if "lora_" not in k and "modules_to_save" not in k]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["lora"] == {"r": 4, "alpha": 8.0, "targets": ["query", "value"],
                             "head": ["classifier"]}  # fmt: skip
    assert main(["train", "--output", str(out), "--resume"]) == 0
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    ma = json.loads((whole / "eval" / "metrics.json").read_text())
    mb = json.loads((out / "eval" / "metrics.json").read_text())
    assert ma["accuracy"] == mb["accuracy"]


def test_resuming_a_lora_checkpoint_with_other_adapters_is_refused(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out, *LORA, "--keep-final-checkpoint")
    assert main(short(argv, "1")) == 0
    assert main(["train", "--output", str(out), "--resume", "--lora-r", "8"]) == 2
    assert "--lora-r 8 differs from the run's 4" in capsys.readouterr().err
    saved = (out / "config.yaml").read_text()
    # a config.yaml edited behind the checkpoint's back: the checkpoint's own record decides
    for edit, message in [
        ({"lora_r: 4": "lora_r: null", "lora_alpha: 8.0": "lora_alpha: null",
          "lora_dropout: 0.0": "lora_dropout: 0.1"},
         "holds only LoRA adapters (--lora-r 4, --lora-targets query,value)"),
        ({"lora_r: 4": "lora_r: 8"}, "was trained with --lora-r 4, this run has 8"),
        ({"lora_targets: null": "lora_targets: query,key,value"},
         "was trained with --lora-targets query,value, this run has key,query,value"),
    ]:  # fmt: skip
        text = saved
        for a, b in edit.items():
            assert a in text
            text = text.replace(a, b)
        (out / "config.yaml").write_text(text)
        assert main(["train", "--output", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_ner_and_qa_train_with_lora(
    ner_setup: tuple[Path, Path], qa_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from task_data import NER_FLAGS, QA_FLAGS

    model, data = ner_setup
    out = tmp_path / "ner"
    argv = ["train", "--task", "ner", "--model", str(model), "--output", str(out),
            "--train", str(data / "train.conll"), "--validation", str(data / "validation.conll"),
            "--test", str(data / "test.conll"), *NER_FLAGS, "--epochs", "2", *LORA]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["lora"]["head"] == ["classifier"] and (out / "adapter").is_dir()
    # ner's default (TaskSpec.lora_targets): every linear layer of the encoder, not q,v only
    assert meta["lora"]["targets"] == ["dense", "key", "query", "value"]
    assert json.loads((out / "eval" / "metrics.json").read_text())["n"] > 0
    rows = tmp_path / "ner.jsonl"
    assert (
        main(["predict", str(out), "--input", str(data / "test.conll"), "--output", str(rows)]) == 0
    )

    model, data = qa_setup
    out = tmp_path / "qa"
    argv = ["train", "--task", "qa", "--model", str(model), "--output", str(out),
            "--train", str(data / "train.jsonl"), "--validation", str(data / "validation.jsonl"),
            "--test", str(data / "test.jsonl"), *QA_FLAGS, "--epochs", "1", *LORA,
            "--lora-targets", "query,key,value", "--no-lora-merge"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["lora"]["head"] == ["qa_outputs"]
    assert meta["lora"]["targets"] == ["key", "query", "value"]
    assert not list((out / "model").glob("*.safetensors"))
    assert (out / "eval").is_dir()
    from jiyi.qa.predict import QuestionAnswerer  # the unmerged run loads as base + adapter

    assert QuestionAnswerer(out).model.training is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lora_r": 0}, "--lora-r must be at least 1"),
        ({"lora_alpha": 8}, "--lora-alpha goes with --lora-r"),
        ({"lora_merge": False}, "--no-lora-merge goes with --lora-r"),
        ({"lora_r": 4, "lora_alpha": 0}, "--lora-alpha must be positive"),
        ({"lora_r": 4, "lora_dropout": 1.0}, r"--lora-dropout must be in \[0, 1\)"),
        ({"lora_r": 4, "lora_targets": " , "}, "--lora-targets ' , ': give a comma list"),
        ({"lora_r": 4, "freeze_embeddings": True}, "--freeze-embeddings with --lora-r"),
        ({"lora_r": 4, "task": "seq2seq"}, "--lora-r applies to --task classification, "),
    ],
)
def test_bad_lora_flags_are_refused(settings: dict, message: str) -> None:
    from jiyi.config import TrainConfig

    with pytest.raises(JiyiError, match=message):
        TrainConfig(train="x.csv", output="o", **settings)


def test_unknown_targets_name_the_linear_layers(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bad"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out, "--lora-r", "4", "--lora-targets", "qkv")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--lora-targets qkv" in err and "query" in err and "Traceback" not in err
    assert not out.exists()


def test_without_peft_lora_r_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from jiyi.config import TrainConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a)
    )
    with pytest.raises(JiyiError, match=r"pip install 'jiyi\[lora\]'"):
        TrainConfig(train="x.csv", output="o", lora_r=4)


def test_the_default_lr_with_lora_r_is_ten_times_the_preset() -> None:
    from types import SimpleNamespace

    from jiyi.config import TrainConfig
    from jiyi.tasks.presets import resolve_schedule
    from jiyi.tasks.registry import get_task

    model = SimpleNamespace(config=SimpleNamespace(hidden_size=384))  # small, as minilm
    preset = get_task("classification").preset
    full, lora = TrainConfig(train="x.csv"), TrainConfig(train="x.csv", lora_r=8)
    resolve_schedule(preset, full, 100, model)
    resolve_schedule(preset, lora, 100, model)
    assert (full.lr, lora.lr) == (pytest.approx(5e-5), pytest.approx(5e-4))
    given = TrainConfig(train="x.csv", lora_r=8, lr=1e-3)
    resolve_schedule(preset, given, 100, model)
    assert given.lr == 1e-3


def test_fine_tuning_from_an_unmerged_run_is_refused(
    unmerged_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(train_argv(unmerged_run, tiny_data_dir, tmp_path / "next")) == 2
    err = capsys.readouterr().err
    assert "a LoRA run kept unmerged (--no-lora-merge)" in err and "Traceback" not in err
