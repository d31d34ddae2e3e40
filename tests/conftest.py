"""Shared fixtures: a tiny random BERT (hidden 32, 2 layers, 4 heads, intermediate 37 — the odd
37 makes a swapped dimension fail loudly) with a WordPiece vocabulary trained on the fly, and a
small synthetic sentiment data set it can learn in seconds."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JIYI_NO_PROGRESS", "1")

POSITIVE = ["good", "great", "fine", "lovely", "superb", "moving", "funny", "smart"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "clumsy", "weak", "tedious"]
FILLER = [
    "the",
    "film",
    "was",
    "a",
    "story",
    "with",
    "plot",
    "and",
    "actors",
    "quite",
    "really",
    "movie",
    "very",
    "of",
    "scenes",
    "it",
    "is",
    "this",
    "ending",
    "music",
]


def make_texts(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (text, label) rows: filler words plus one or two sentiment words of the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(3, 9))
        for _ in range(rng.randint(1, 2)):
            words.insert(
                rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE)
            )
        rows.append((" ".join(words), label))
    return rows


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def tiny_bert_config(vocab_size: int, **extra: Any) -> Any:
    """The tiny random BERT's shape (hidden 32, 2 layers, 4 heads, intermediate 37, 64
    positions) over `vocab_size` tokens; `extra` sets the rest (labels, special token ids)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        **extra,
    )


def build_tiny_bert(out_dir: Path, corpus: list[str]) -> Path:
    """Save a random BertModel with a WordPiece tokenizer built from `corpus` as an HF folder.

    The vocabulary is every character of the corpus (as a word start and as a `##`
    continuation) plus every whole word, in sorted order: the same ids on every run. (The
    `tokenizers` WordPiece trainer breaks ties differently from run to run, which made the tiny
    model, and every number pinned on it, vary between sessions.) Words outside the corpus
    split into pieces, e.g. "unrelatedness" -> u ##n ##r ...
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {
            w
            for text in corpus
            for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        }
    )
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + [f"##{c}" for c in chars] + [w for w in words if len(w) > 1]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    torch.manual_seed(0)
    config = tiny_bert_config(tok.get_vocab_size(), type_vocab_size=2, pad_token_id=0)
    BertModel(config).save_pretrained(str(out_dir), safe_serialization=True)
    fast.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder, built once per session (copy it before mutating it)."""
    corpus = [t for t, _ in make_texts(400, seed=1)] + ["unrelated words for the vocab"]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), corpus)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train (240) / validation (60) / test (60) CSVs of the synthetic sentiment task."""
    root = tmp_path_factory.mktemp("tiny-data")
    write_csv(root / "train.csv", make_texts(240, seed=2))
    write_csv(root / "validation.csv", make_texts(60, seed=3))
    write_csv(root / "test.csv", make_texts(60, seed=4))
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own tokenization cache."""
    monkeypatch.setenv("JIYI_CACHE", str(tmp_path / ".jiyi-cache"))


@pytest.fixture(scope="session")
def _initial_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_torch_threads(_initial_torch_threads: int) -> Iterator[None]:
    """`--threads N` sets torch's process-wide thread count. After each test it goes back to the
    session's first value, so a test (or a module fixture) that passed it never changes the
    arithmetic, and so the bits, of the tests after it."""
    import torch

    yield
    if torch.get_num_threads() != _initial_torch_threads:
        torch.set_num_threads(_initial_torch_threads)


TRAIN_FLAGS = [
    "--epochs",
    "4",
    "--batch-size",
    "16",
    "--lr",
    "3e-3",
    "--max-length",
    "32",
    "--seed",
    "0",
]


def train_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """`jiyi train` on the tiny model and data with the flags every run test shares."""
    return ["train", "--model", str(model), "--train", str(data / "train.csv"),
            "--validation", str(data / "validation.csv"), "--test", str(data / "test.csv"),
            "--output", str(out), *TRAIN_FLAGS, *extra]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One finished run on the tiny model, shared by the evaluate/predict tests (read-only)."""
    from jiyi.cli import main

    out = tmp_path_factory.mktemp("run") / "run"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out)) == 0
    return out


@pytest.fixture(scope="session")
def ner_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny BERT for NER, folder of train/validation/test.conll): people and places among filler
    words; some test sentences are long enough to need several windows."""
    from task_data import make_sentences, ner_vocab_corpus, write_conll

    root = tmp_path_factory.mktemp("ner")
    model = build_tiny_bert(root / "model", ner_vocab_corpus())
    data = root / "data"
    data.mkdir()
    write_conll(data / "train.conll", make_sentences(300, 1))
    write_conll(data / "validation.conll", make_sentences(60, 2))
    write_conll(data / "test.conll", make_sentences(60, 3, long_every=10))
    return model, data


@pytest.fixture(scope="session")
def ner_run(ner_setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished NER run (with --test, so eval/ is written), shared read-only by the NER
    tests; a test that changes it works on a copy (`copy_tree`)."""
    from jiyi.cli import main
    from task_data import NER_FLAGS

    model, data = ner_setup
    out = tmp_path_factory.mktemp("ner-run") / "run"
    argv = ["train", "--task", "ner", "--model", str(model), "--output", str(out)]
    argv += ["--train", str(data / "train.conll"), "--validation", str(data / "validation.conll")]
    assert main([*argv, "--test", str(data / "test.conll"), *NER_FLAGS]) == 0
    return out


@pytest.fixture(scope="session")
def qa_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny BERT for QA, folder of train/validation/test.jsonl): "what is the code?" over
    contexts of filler words, one in eight unanswerable, some longer than a window."""
    from task_data import make_rows, qa_vocab_corpus, write_jsonl

    root = tmp_path_factory.mktemp("qa")
    model = build_tiny_bert(root / "model", qa_vocab_corpus())
    data = root / "data"
    write_jsonl(data / "train.jsonl", make_rows(300, 1, long_every=6))
    write_jsonl(data / "validation.jsonl", make_rows(60, 2, long_every=6))
    write_jsonl(data / "test.jsonl", make_rows(60, 3, long_every=5))  # some need 2+ windows
    return model, data


@pytest.fixture(scope="session")
def qa_run(qa_setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished QA run (with --test), shared read-only by the QA tests; a test that changes
    it works on a copy (`copy_tree`)."""
    from jiyi.cli import main
    from task_data import QA_FLAGS

    model, data = qa_setup
    out = tmp_path_factory.mktemp("qa-run") / "run"
    argv = ["train", "--task", "qa", "--model", str(model), "--output", str(out)]
    argv += ["--train", str(data / "train.jsonl"), "--validation", str(data / "validation.jsonl")]
    assert main([*argv, "--test", str(data / "test.jsonl"), *QA_FLAGS]) == 0
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def build_faq_memory(model_dir: Path, root: Path) -> Path:
    """A 3-entry FAQ memory (question, answer) embedded by `model_dir`, its abstention threshold
    calibrated on 5 validation questions, 2 of them unanswerable. Returns the memory folder."""
    from jiyi.cli import main

    faq = root / "faq.csv"
    faq.write_text(
        "id,question,answer\n"
        "a,good great film,Answer A\n"
        "b,bad awful plot,Answer B\n"
        "c,funny smart music,Answer C\n"
    )
    val = root / "val.csv"
    val.write_text(
        "question,id\ngood great film,a\nbad awful plot,b\nfunny smart music,c\n"
        "unrelated words,\nwords for the vocab,\n"
    )
    mem = root / "faq"
    argv = ["memory", "build", str(model_dir), "--data", str(faq), "--text-column", "question",
            "--payload", "answer", "--validation", str(val), "--output", str(mem)]  # fmt: skip
    assert main(argv) == 0
    return mem


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """A local Ray instance of 2 CPUs for one test module (`jiyi[scale]`; the module skips
    without it), started as `jiyi.scale.jobs.ray_session` starts one."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _system_config={"worker_niceness": 0},
    )
    yield
    ray.shutdown()


def pooled_head_probs(folder: Path, texts: list[str], *, normalize: bool) -> np.ndarray:
    """What a pooled classifier folder (jiyi.pooled: encoder + head.safetensors) should predict,
    computed from its files without jiyi's model class: softmax((mean-pool(AutoModel(text)),
    normalised when `normalize`) @ W.T + b) / T), T the stored temperature."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModel, AutoTokenizer

    encoder, tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    head = load_file(str(folder / "head.safetensors"))
    temperature = json.loads((folder / "jiyi.json").read_text())["calibration"]["temperature"]
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        hidden = encoder(**enc).last_hidden_state  # (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        v = (hidden * mask).sum(1) / mask.sum(1)
        if normalize:
            v = v / v.norm(dim=1, keepdim=True)
    logits = v.numpy() @ head["weight"].T + head["bias"]
    return torch.softmax(torch.from_numpy(logits / temperature), -1).numpy()
