"""The prompts of a model (`jiyi.prompts`) and where they apply: `jiyi embed`, memory rows and
queries (and their fingerprint), summarize sentences. A model without prompts is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_tree, make_texts
from jiyi.cli import main as run_cli
from jiyi.errors import JiyiError
from jiyi.inspect.embeddings import embed_texts, load_encoder, model_fingerprint
from jiyi.prompts import PROMPTS_FILE, model_prompts, prompt_for, with_prompt

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def prompted_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with e5's prompts in its metadata (as the converted me5-small has)."""
    folder = copy_tree(tiny_model_dir, tmp_path_factory.mktemp("prompted") / "model")
    (folder / PROMPTS_FILE).write_text(json.dumps({"prompts": E5_PROMPTS}))
    return folder


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [t for t, _ in make_texts(12, seed=9)]


def test_model_prompts_read_the_folders_metadata(tmp_path: Path, prompted_dir: Path) -> None:
    assert model_prompts(prompted_dir) == E5_PROMPTS
    assert model_prompts(tmp_path) == {}  # no metadata: no prompts
    assert model_prompts("intfloat/multilingual-e5-small") == {}  # a Hub id is not a folder
    (tmp_path / PROMPTS_FILE).write_text(
        json.dumps({"prompts": {"query": "q: ", "document": "d: ", "classification": "c: "}})
    )
    assert model_prompts(tmp_path) == {"query": "q: ", "passage": "d: "}
    (tmp_path / PROMPTS_FILE).write_text("{not json")
    with pytest.raises(JiyiError, match=PROMPTS_FILE):
        model_prompts(tmp_path)


def test_prompt_for_and_overrides(prompted_dir: Path, tiny_model_dir: Path) -> None:
    assert prompt_for(prompted_dir, "query") == "query: "
    assert prompt_for(prompted_dir, "passage") == "passage: "
    assert prompt_for(prompted_dir, "query", override="") == ""
    assert prompt_for(tiny_model_dir, "passage", override="doc: ") == "doc: "
    assert prompt_for(tiny_model_dir, "query") == ""
    with pytest.raises(ValueError):
        prompt_for(prompted_dir, "question")
    assert with_prompt(["a", "b"], "query: ") == ["query: a", "query: b"]
    assert with_prompt(["a"], "") == ["a"]


def test_embed_texts_prompt_is_a_prefix(prompted_dir: Path, texts: list[str]) -> None:
    encoder = load_encoder(prompted_dir)
    with_q = embed_texts(encoder, texts, prompt="query: ")
    np.testing.assert_allclose(with_q, embed_texts(encoder, with_prompt(texts, "query: ")))
    assert not np.allclose(with_q, embed_texts(encoder, texts))


def test_jiyi_embed_uses_the_models_query_prompt_unless_told(
    prompted_dir: Path, tiny_model_dir: Path, texts: list[str], tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

    def embed(model: Path, *extra: str) -> np.ndarray:
        out = tmp_path / "out.npy"
        assert run_cli(["embed", str(model), "--input", str(tmp_path / "in.txt"),
                        "--output", str(out), *extra]) == 0  # fmt: skip
        return np.load(out)

    encoder = load_encoder(prompted_dir)
    np.testing.assert_allclose(
        embed(prompted_dir), embed_texts(encoder, with_prompt(texts, "query: ")), atol=1e-6
    )
    np.testing.assert_allclose(
        embed(prompted_dir, "--prompt", "passage: "),
        embed_texts(encoder, with_prompt(texts, "passage: ")),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        embed(prompted_dir, "--prompt", ""), embed_texts(encoder, texts), atol=1e-6
    )
    # a model without prompts: exactly as before
    np.testing.assert_allclose(
        embed(tiny_model_dir), embed_texts(load_encoder(tiny_model_dir), texts), atol=1e-6
    )


def test_memory_rows_are_passages_queries_are_queries(
    prompted_dir: Path, texts: list[str], tmp_path: Path
) -> None:
    from jiyi.memory.knn import Memory

    mem = Memory.build(tmp_path / "mem", str(prompted_dir), texts, labels=["a", "b"] * 6)
    assert mem.manifest["prompts"] == E5_PROMPTS
    encoder = load_encoder(prompted_dir)
    rows = embed_texts(encoder, with_prompt(texts, "passage: "), normalize=True)
    np.testing.assert_allclose(mem.state.rows.vectors(), rows, atol=1e-5)

    reopened = Memory.open(tmp_path / "mem")  # the fingerprint (prompts included) still matches
    query = embed_texts(encoder, ["query: " + texts[3]], normalize=True)
    np.testing.assert_allclose(reopened.embed([texts[3]]), query, atol=1e-5)
    hit = reopened.query([texts[3]], k=1)[0][0]
    assert hit["score"] == pytest.approx(float(query[0] @ rows[3]), abs=1e-4)
    plain = reopened.query([texts[3]], k=1, prompt="")[0][0]  # the query prompt overridden
    assert plain["score"] != pytest.approx(hit["score"], abs=1e-6)
    assert reopened.stats()["prompts"] == E5_PROMPTS


def test_memory_fingerprint_includes_the_prompts(
    prompted_dir: Path, tiny_model_dir: Path, texts: list[str], tmp_path: Path
) -> None:
    from jiyi.memory.knn import Memory

    with_prompts = Memory.build(tmp_path / "a", str(prompted_dir), texts)
    none = Memory.build(
        tmp_path / "b", str(prompted_dir), texts, prompts={"query": "", "passage": ""}
    )
    other = Memory.build(tmp_path / "c", str(prompted_dir), texts, prompts={"passage": "doc: "})
    fingerprints = {m.manifest["fingerprint"] for m in (with_prompts, none, other)}
    assert len(fingerprints) == 3
    assert "prompts" not in none.manifest
    assert other.manifest["prompts"] == {"query": "query: ", "passage": "doc: "}
    # no prompts: the fingerprint jiyi always computed (old memories still open)
    assert none.manifest["fingerprint"] == model_fingerprint(prompted_dir, "mean", "-1", True)
    plain = Memory.build(tmp_path / "d", str(tiny_model_dir), texts)
    assert "prompts" not in plain.manifest
    assert plain.manifest["fingerprint"] == model_fingerprint(tiny_model_dir, "mean", "-1", True)


def test_memory_cli_prompt_flags(
    prompted_dir: Path, texts: list[str], tmp_path: Path, capsys
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"{t},x\n" for t in texts), encoding="utf-8")
    out = tmp_path / "mem"
    assert run_cli(["memory", "build", str(prompted_dir), "--data", str(data), "--output",
                    str(out), "--prompt", "", "--query-prompt", "q: "]) == 0  # fmt: skip
    manifest = json.loads((out / "memory.json").read_text())
    assert manifest["prompts"] == {"query": "q: "}
    capsys.readouterr()
    assert run_cli(["memory", "query", str(out), texts[0], "-k", "1"]) == 0
    default = json.loads(capsys.readouterr().out)["hits"][0]["score"]
    assert run_cli(["memory", "query", str(out), texts[0], "-k", "1", "--prompt", ""]) == 0
    unprompted = json.loads(capsys.readouterr().out)["hits"][0]["score"]
    assert unprompted == pytest.approx(1.0, abs=1e-4)  # rows were embedded without a prompt
    assert default < unprompted


def test_summarize_embeds_sentences_as_passages(
    prompted_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jiyi.inspect.embeddings as embeddings
    from jiyi.summarize import summarize

    seen = []
    real = embeddings.embed_texts

    def spy(encoder, texts, **kwargs):
        seen.append(kwargs.get("prompt", ""))
        return real(encoder, texts, **kwargs)

    monkeypatch.setattr(embeddings, "embed_texts", spy)
    doc = "A good film. The plot is weak. The music is great. The end is sad."
    summarize(str(prompted_dir), doc, sentences=1, ranking="centrality", language="en")
    summarize(str(tiny_model_dir), doc, sentences=1, ranking="centrality", language="en")
    assert seen == ["passage: ", ""]


def test_hub_snapshots_of_e5_get_the_e5_prompts(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--intfloat--multilingual-e5-small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert model_prompts(snapshot) == E5_PROMPTS
    other = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc"
    other.mkdir(parents=True)
    assert model_prompts(other) == {}
