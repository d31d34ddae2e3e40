"""`jiyi serve` on a NER run: a tiny tagger trained in seconds on a trivially learnable pattern
(names are PER, cities LOC, everything else O), served by real uvicorn servers (conftest.py).
/v1/predict answers entities whose offsets slice the input exactly (texts) or token indices
(pre-tokenised input), /v1/info names the entity types, the classification-only endpoints answer
501, the OpenAPI document holds under schemathesis, `jiyi serve` itself starts on the run, and
the page highlights the entities (Playwright, Debian's chromium; skipped when missing)."""

from __future__ import annotations

import json
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import batches, error_of, fuzz

from conftest import build_tiny_bert
from jiyi.cli import main as run_cli
from jiyi.serve import cli as serve_cli
from jiyi.serve.ner import NerService
from jiyi.serve.settings import Settings
from task_data import make_sentences, ner_vocab_corpus, write_conll

TEXTS = [
    "the film with alice was in paris and bob liked it",
    "Carol  flew to New York 😀 with dave.",  # two spaces, an emoji (2 UTF-16 units), a period
    "北京 and london, then 东京",  # CJK characters are words of their own
    "it was the story",
]


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NER run of the tiny BERT on tests/task_data.py's sentences: 40 steps (about 2 s) learn
    the pattern."""
    root = tmp_path_factory.mktemp("ner-serve")
    model = build_tiny_bert(root / "model", ner_vocab_corpus())
    train = write_conll(root / "train.conll", make_sentences(200, 1))
    out = root / "run"
    argv = ["train", "--task", "ner", "--model", str(model), "--train", str(train)]
    argv += ["--output", str(out), "--max-steps", "40", "--batch-size", "16", "--lr", "5e-3"]
    argv += ["--max-length", "24", "--seed", "0"]
    assert run_cli(argv) == 0
    return out


@pytest.fixture(scope="module")
def tagger(ner_run: Path) -> Any:
    from jiyi.ner.predict import NerTagger

    return NerTagger(ner_run)


@pytest.fixture(scope="module")
def ner_server(start_server: Any, tagger: Any) -> Any:
    return start_server(Settings(max_wait_ms=20, max_texts=8, max_chars=300), NerService(tagger))


# ---- the API ------------------------------------------------------------------------------------


def test_predict_gives_entities_whose_offsets_slice_the_text(ner_server: Any, tagger: Any) -> None:
    r = httpx.post(f"{ner_server.url}/v1/predict", json={"texts": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [row["text"] for row in rows] == TEXTS
    for row in rows:
        assert set(row) == {"text", "entities"}
        for e in row["entities"]:
            assert set(e) == {"start", "end", "text", "type", "score"}
            assert row["text"][e["start"] : e["end"]] == e["text"]
            assert e["type"] in {"PER", "LOC"} and 0 < e["score"] <= 1
    # the same objects `jiyi predict` writes
    assert rows == [
        {"text": t, **p} for t, p in zip(TEXTS, tagger.predict_texts(TEXTS), strict=True)
    ]
    found = {(e["text"], e["type"]) for e in rows[0]["entities"]}
    assert {("alice", "PER"), ("paris", "LOC"), ("bob", "PER")} <= found, found


def test_predict_takes_pre_tokenised_sentences(ner_server: Any) -> None:
    words = [["the", "film", "with", "alice", "in", "new", "york"], ["bob"]]
    r = httpx.post(f"{ner_server.url}/v1/predict", json={"tokens": words}, timeout=30)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    for sentence, row in zip(words, rows, strict=True):
        assert set(row) == {"tokens", "tags", "entities"}
        assert row["tokens"] == sentence and len(row["tags"]) == len(sentence)
        for e in row["entities"]:  # token indices, end exclusive
            assert " ".join(sentence[e["start"] : e["end"]]) == e["text"]
    assert {"start": 3, "end": 4, "text": "alice", "type": "PER"}.items() <= rows[0]["entities"][
        0
    ].items()
    url = f"{ner_server.url}/v1/predict"
    both = error_of(httpx.post(url, json={"texts": ["a"], "tokens": [["a"]]}), 422)
    assert "either texts or tokens" in both["message"]
    assert "either texts or tokens" in error_of(httpx.post(url, json={}), 422)["message"]
    assert (
        "tokens[0][1]" in error_of(httpx.post(url, json={"tokens": [["a", " "]]}), 422)["message"]
    )
    assert (
        "neighbours"
        in error_of(httpx.post(url, json={"texts": ["a"], "neighbours": 2}), 422)["message"]
    )


def test_concurrent_requests_are_batched_and_each_gets_its_own(
    ner_server: Any, tagger: Any
) -> None:
    bodies = [{"texts": [t]} for t in TEXTS] * 3 + [{"tokens": [t.split()]} for t in TEXTS] * 2
    before = batches(ner_server)
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(
            pool.map(lambda b: httpx.post(f"{ner_server.url}/v1/predict", json=b), bodies)
        )
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        (row,) = answer.json()["predictions"]
        if "texts" in body:
            assert row == {"text": body["texts"][0], **tagger.predict_texts(body["texts"])[0]}
        else:
            assert row == tagger.predict_tokens(body["tokens"])[0]
    passes, texts = (
        after - start for after, start in zip(batches(ner_server), before, strict=True)
    )
    assert texts == len(bodies) and passes < len(bodies)  # some requests shared a forward pass


def test_info_names_the_task_and_entity_types(ner_server: Any) -> None:
    info = httpx.get(f"{ner_server.url}/v1/info").json()
    assert info["task"] == "ner" and info["format"] == "torch" and info["model"] == "run"
    assert info["entity_types"] == ["LOC", "PER"] and info["scheme"] == "BIO"
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert info["max_length"] == 24 and info["memory"] is None
    assert info["features"] == {
        "predict": True, "explain": False, "embed": True, "memory": False, "ask": False,
    }  # fmt: skip


def test_classification_endpoints_answer_501_and_embed_works(ner_server: Any) -> None:
    for path, body in [
        ("/v1/explain", {"text": "alice in paris"}),
        ("/v1/memory/query", {"texts": ["alice"]}),
        ("/v1/memory/add", {"texts": ["alice"], "labels": ["PER"]}),
        ("/v1/ask", {"question": "where is alice?"}),
    ]:
        error = error_of(httpx.post(f"{ner_server.url}{path}", json=body), 501)
        assert error["code"] == "not_implemented"
        assert "classification runs; this is a NER run" in error["message"], (path, error)
    r = httpx.post(f"{ner_server.url}/v1/embed", json={"texts": ["alice", "paris"]}).json()
    assert r["dim"] == 32 and len(r["vectors"]) == 2


def test_openapi_describes_the_ner_api(ner_server: Any, server: Any) -> None:
    spec = httpx.get(f"{ner_server.url}/openapi.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    assert predict["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EntityResponse"
    }
    request = spec["components"]["schemas"]["EntityRequest"]
    assert set(request["properties"]) == {"texts", "tokens"}
    assert "pre-tokenised" in request["properties"]["tokens"]["description"]
    assert "501" in spec["paths"]["/v1/ask"]["post"]["responses"]
    info = spec["paths"]["/v1/info"]["get"]["responses"]["200"]["content"]["application/json"]
    assert info["schema"] == {"$ref": "#/components/schemas/NerInfoResponse"}
    # a classification run's document is as before
    plain = httpx.get(f"{server.url}/openapi.json").json()
    assert "EntityResponse" not in plain["components"]["schemas"]
    assert "501" not in plain["paths"]["/v1/ask"]["post"]["responses"]


def test_generated_requests_never_get_a_server_error(ner_server: Any) -> None:
    """Schemathesis on the NER server's own /openapi.json (fewer examples than the classification
    run's test_schemathesis.py: the operations are the same)."""
    pytest.importorskip("schemathesis")
    # not schemathesis's not_a_server_error: a documented 501 is this run's answer to explain
    # and the memory endpoints; any other 5xx is a problem
    found = fuzz(ner_server.url, 10, expected_5xx=frozenset({501}))
    assert not found.problems, "\n".join(found.problems[:20])
    assert found.statuses[200] >= 10 and found.statuses[501] >= 4, dict(found.statuses)


# ---- the command -----------------------------------------------------------------------------


def test_cli_refuses_a_memory_with_a_ner_run(
    ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_cli.main([str(ner_run), "--memory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--memory" in err and "NER run" in err and "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_serves_a_ner_run(ner_run: Path, serve_process: Any) -> None:
    argv = ["-m", "jiyi.serve.cli", str(ner_run), "--port", "0", "--threads", "1"]
    with serve_process(argv) as (proc, url, log):
        assert "NER model run (torch, entity types LOC, PER)" in log[-1]
        r = httpx.post(f"{url}/v1/predict", json={"texts": [TEXTS[0]]}, timeout=30)
        assert r.status_code == 200 and r.json()["predictions"][0]["entities"], r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)


# ---- the page ----------------------------------------------------------------------------------


def test_page_highlights_the_entities(ner_server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    text = "<b>bob</b> and alice met in new york 😀, then paris"
    api = httpx.post(f"{ner_server.url}/v1/predict", json={"texts": [text]}, timeout=30)
    entities = api.json()["predictions"][0]["entities"]
    assert {e["text"] for e in entities} >= {"alice", "paris"}, entities
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    try:
        page.goto(f"{ner_server.url}/")
        expect(page.locator("#info")).to_contain_text("task ner")
        expect(page.locator("#info")).to_contain_text("entity types LOC, PER")
        expect(page.locator("#attention")).to_be_hidden()
        page.get_by_label("Text to tag").fill(text)
        page.get_by_role("button", name="Predict").click()

        # the text as typed (markup shown as text, never parsed), one mark per entity
        box = page.locator("#entity-text")
        expect(box).to_have_text(text)
        assert box.locator("b").count() == 0
        marks = box.locator("mark.ent")
        expect(marks).to_have_count(len(entities))
        assert marks.all_text_contents() == [e["text"] for e in entities]
        for i, e in enumerate(entities):
            mark = marks.nth(i)
            assert mark.get_attribute("data-type") == e["type"]
            assert mark.get_attribute("title") == f"{e['type']} · score {e['score']:.3f}"
            label = mark.evaluate("m => getComputedStyle(m, '::after').content")
            assert label == json.dumps(e["type"])  # the type drawn as a small label
        colours = {
            e["type"]: marks.nth(i).evaluate("m => getComputedStyle(m).backgroundColor")
            for i, e in enumerate(entities)
        }
        assert len(set(colours.values())) == len(colours)  # a colour per type

        rows = page.locator("#entity-body tr.entity")
        expect(rows).to_have_count(len(entities))
        expect(rows.first.locator("td")).to_have_count(4)
        expect(page.locator("#entity-count")).to_have_text(f"{len(entities)} entities")
        expect(page.locator("#entity-legend")).to_have_text("LOCPER")
        expect(page.locator("#prediction")).to_be_hidden()
        expect(page.locator("#predict-status")).to_be_empty()

        # a text without entities: the text, no marks, a row saying so
        page.get_by_label("Text to tag").fill("it was the story")
        page.get_by_role("button", name="Predict").click()
        expect(box).to_have_text("it was the story")
        expect(marks).to_have_count(0)
        expect(page.locator("#entity-body")).to_have_text("No entities found.")
        page.screenshot(path=str(tmp_path / "serve-ner.png"))
        assert problems == []
    finally:
        context.close()
