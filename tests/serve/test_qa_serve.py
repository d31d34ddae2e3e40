"""`jiyi serve` on a QA run: a tiny question answerer trained in about a second on the synthetic
task of tests/qa/test_qa_train.py (the answer to "what is the code?" is the word after "the code
is"; a context without that phrase has none), served by real uvicorn servers (conftest.py).
/v1/ask answers spans whose offsets slice the context exactly, the same rows as
`QuestionAnswerer.answer`; /v1/info says task qa; /v1/predict, explanations and the memory
endpoints answer 501; bad requests get a 422 that names what is wrong; `jiyi serve` itself
starts on the run, and the page marks the answer in the context (Playwright, Debian's chromium;
skipped when missing). The FAQ meaning of /v1/ask on a classification run with a memory is
tests/serve/test_server.py::test_memory_query_ask_and_add."""

from __future__ import annotations

import json
import random
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import batches, error_of, fuzz

from conftest import FILLER, build_tiny_bert
from jiyi.cli import main as run_cli
from jiyi.serve import cli as serve_cli
from jiyi.serve.qa import QaService
from jiyi.serve.settings import Settings

CODES = ["alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "tango"]
QUESTION = "what is the code?"
CONTEXTS = [
    "<b>the film</b> 😀 was and the code is kilo and the music was very.",  # markup, an emoji
    " ".join(["the film was a story with plot and actors"] * 4) + " then the code is tango.",
    "the film was quite really and the music was very.",  # no answer
]
ANSWERS = ["kilo", "tango", ""]


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Rows as tests/qa/test_qa_train.py makes them: filler words, "the code is CODE" at a random
    place, every 8th context without it (no answer)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
        if i % 8 == 7:
            context = " ".join(words) + "."
        else:
            code, at = rng.choice(CODES), rng.randint(0, len(words))
            prefix = " ".join([*words[:at], "the code is "]).lstrip()
            context = prefix + " ".join([code, *words[at:]]) + "."
            answers = {"text": [code], "answer_start": [len(prefix)]}
        rows.append({"id": f"q{i}", "question": QUESTION, "context": context, "answers": answers})
    return rows


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QA run of the tiny BERT: 4 epochs of 200 questions (about 1 s), all answers right."""
    root = tmp_path_factory.mktemp("qa-serve")
    corpus = [" ".join(FILLER), " ".join(CODES), QUESTION, "the code is ."]
    model = build_tiny_bert(root / "model", corpus)
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in make_rows(200, 1)), encoding="utf-8")
    out = root / "run"
    argv = ["train", "--task", "qa", "--model", str(model), "--train", str(train)]
    argv += ["--output", str(out), "--epochs", "4", "--batch-size", "16", "--lr", "3e-3"]
    argv += ["--max-length", "48", "--seed", "0", "--threads", "1"]
    assert run_cli(argv) == 0
    return out


@pytest.fixture(scope="module")
def answerer(qa_run: Path) -> Any:
    from jiyi.qa.predict import QuestionAnswerer

    return QuestionAnswerer(qa_run)


@pytest.fixture(scope="module")
def qa_server(start_server: Any, answerer: Any) -> Any:
    return start_server(Settings(max_wait_ms=20, max_texts=8, max_chars=300), QaService(answerer))


# ---- the API ------------------------------------------------------------------------------------


def test_ask_answers_spans_whose_offsets_slice_the_context(qa_server: Any, answerer: Any) -> None:
    rows = []
    for context in CONTEXTS:
        body = {"question": QUESTION, "context": context}
        r = httpx.post(f"{qa_server.url}/v1/ask", json=body, timeout=30)
        assert r.status_code == 200, r.text
        rows.append(r.json())
    assert [row["answer"] for row in rows] == ANSWERS
    for row, context in zip(rows, CONTEXTS, strict=True):
        assert set(row) == {"question", "answer", "start", "end", "score"}
        assert row["question"] == QUESTION and 0 < row["score"] <= 1
        if row["answer"]:
            assert context[row["start"] : row["end"]] == row["answer"]
    assert rows[0]["start"] == CONTEXTS[0].index("kilo") == 38  # code points: 😀 is one
    assert (rows[2]["start"], rows[2]["end"]) == (None, None)  # abstains: null, not missing
    # the same rows as `jiyi predict` writes
    assert rows == answerer.answer([QUESTION] * 3, CONTEXTS)


def test_ask_takes_several_pairs_at_once(qa_server: Any, answerer: Any) -> None:
    questions = [QUESTION, "which code?", QUESTION]
    body = {"questions": questions, "contexts": CONTEXTS}
    r = httpx.post(f"{qa_server.url}/v1/ask", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"answers": answerer.answer(questions, CONTEXTS)}
    assert [a["answer"] for a in r.json()["answers"]][::2] == ["kilo", ""]


def test_concurrent_questions_are_batched_and_each_gets_its_own(
    qa_server: Any, answerer: Any
) -> None:
    bodies = [{"question": QUESTION, "context": c} for c in CONTEXTS] * 4
    before = batches(qa_server)
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{qa_server.url}/v1/ask", json=b), bodies))
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json() == answerer.answer([body["question"]], [body["context"]])[0]
    passes, pairs = (after - start for after, start in zip(batches(qa_server), before, strict=True))
    assert pairs == len(bodies) and passes < len(bodies)  # some requests shared a forward pass


def test_info_says_task_qa(qa_server: Any) -> None:
    info = httpx.get(f"{qa_server.url}/v1/info").json()
    assert info["task"] == "qa" and info["format"] == "torch" and info["model"] == "run"
    assert info["labels"] == [] and info["memory"] is None
    assert (info["max_length"], info["stride"]) == (48, 10)
    assert (info["max_answer_length"], info["null_threshold"]) == (30, 0.0)
    assert info["features"] == {
        "predict": False, "explain": False, "embed": True, "memory": False, "ask": True,
    }  # fmt: skip


def test_other_endpoints_answer_501_and_embed_works(qa_server: Any) -> None:
    predict = error_of(httpx.post(f"{qa_server.url}/v1/predict", json={"texts": ["a"]}), 501)
    assert predict["code"] == "not_implemented" and "POST /v1/ask" in predict["message"]
    for path, body in [
        ("/v1/explain", {"text": "the code is kilo"}),
        ("/v1/memory/query", {"texts": ["kilo"]}),
        ("/v1/memory/add", {"texts": ["kilo"], "labels": ["x"]}),
    ]:
        error = error_of(httpx.post(f"{qa_server.url}{path}", json=body), 501)
        assert error["code"] == "not_implemented"
        assert "classification runs; this is a QA run" in error["message"], (path, error)
    r = httpx.post(f"{qa_server.url}/v1/embed", json={"texts": ["kilo", "tango"]}).json()
    assert r["dim"] == 32 and len(r["vectors"]) == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"question": QUESTION}, "context is missing"),
        ({"context": CONTEXTS[0]}, "question is missing"),
        ({}, "question is missing"),
        ({"question": "", "context": CONTEXTS[0]}, "question: String should have at least 1"),
        ({"question": " \n", "context": CONTEXTS[0]}, "question: the text is empty"),
        ({"question": QUESTION, "context": " "}, "context: the text is empty"),
        ({"question": QUESTION, "context": "a" * 301}, "--max-chars 300"),
        ({"questions": [QUESTION] * 2, "contexts": CONTEXTS}, "contexts: 3 given for 2"),
        ({"questions": [QUESTION]}, "contexts is missing"),
        ({"questions": [QUESTION, ""], "contexts": ["a", "b"]}, "questions[1]"),
        ({"questions": [QUESTION] * 9, "contexts": ["a"] * 9}, "--max-texts 8"),
        ({"question": QUESTION, "context": "a", "questions": [QUESTION]}, "not both"),
        ({"question": QUESTION, "context": "a", "top_k": 2}, "top_k"),  # the FAQ form
        ({"question": 3, "context": "a"}, "question"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_questions_get_a_422_that_says_why(qa_server: Any, body: dict, words: str) -> None:
    error = error_of(httpx.post(f"{qa_server.url}/v1/ask", json=body), 422)
    assert error["code"] == "invalid_request" and words in error["message"], error


def test_openapi_describes_the_qa_api(qa_server: Any) -> None:
    spec = httpx.get(f"{qa_server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    ask = spec["paths"]["/v1/ask"]["post"]
    assert ask["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QaRequest"
    }
    assert set(schemas["QaRequest"]["properties"]) == {
        "question", "context", "questions", "contexts",
    }  # fmt: skip
    answer = ask["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["anyOf"] == [
        {"$ref": "#/components/schemas/QaAnswer"},
        {"$ref": "#/components/schemas/QaAnswers"},
    ]
    assert set(schemas["QaAnswer"]["required"]) == {"question", "answer", "start", "end", "score"}
    assert "AskRequest" not in schemas and "AskResponse" not in schemas  # not the FAQ's /v1/ask
    assert "501" in spec["paths"]["/v1/predict"]["post"]["responses"]
    assert "501" in spec["paths"]["/v1/memory/query"]["post"]["responses"]
    info = spec["paths"]["/v1/info"]["get"]["responses"]["200"]["content"]["application/json"]
    assert info["schema"] == {"$ref": "#/components/schemas/QaInfoResponse"}


def test_generated_requests_never_get_a_server_error(qa_server: Any) -> None:
    """Schemathesis on the QA server's own /openapi.json (few examples: the shared operations
    are covered by test_schemathesis.py)."""
    pytest.importorskip("schemathesis")
    found = fuzz(qa_server.url, 6, expected_5xx=frozenset({501}))
    assert not found.problems, "\n".join(found.problems[:20])
    assert found.statuses[200] >= 5 and found.statuses[501] >= 3, dict(found.statuses)


# ---- the command -----------------------------------------------------------------------------


def test_cli_refuses_a_memory_with_a_qa_run(
    qa_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_cli.main([str(qa_run), "--memory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--memory" in err and "QA run" in err and "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_serves_a_qa_run(qa_run: Path, serve_process: Any) -> None:
    argv = ["-m", "jiyi.serve.cli", str(qa_run), "--port", "0", "--threads", "1"]
    with serve_process(argv) as (proc, url, log):
        assert "QA model run (torch, answers at POST /v1/ask)" in log[-1]
        body = {"question": QUESTION, "context": CONTEXTS[0]}
        r = httpx.post(f"{url}/v1/ask", json=body, timeout=30)
        assert r.status_code == 200 and r.json()["answer"] == "kilo", r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)


# ---- the page ----------------------------------------------------------------------------------


def test_page_marks_the_answer_in_the_context(qa_server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = CONTEXTS[0]
    api = httpx.post(f"{qa_server.url}/v1/ask", json={"question": QUESTION, "context": context})
    assert api.json()["answer"] == "kilo", api.text
    score = api.json()["score"]
    browser_context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    try:
        page.goto(f"{qa_server.url}/")
        expect(page.locator("#info")).to_contain_text("task qa")
        expect(page.locator("#info")).to_contain_text("max answer 30 tokens")
        expect(page.locator("#text-card")).to_be_hidden()
        expect(page.locator("#attention")).to_be_hidden()
        expect(page.locator("#ask")).to_be_hidden()  # the FAQ box is for a memory
        page.get_by_label("Context", exact=True).fill(context)
        page.locator("#qa-question").fill(QUESTION)
        page.get_by_role("button", name="Answer").click()

        # the context as typed (markup shown as text, never parsed), the answer in one mark
        box = page.locator("#qa-context-view")
        expect(box).to_have_text(context)
        assert box.locator("b").count() == 0
        marks = box.locator("mark")
        expect(marks).to_have_count(1)
        expect(marks).to_have_text("kilo")
        assert marks.get_attribute("title") == f"answer · score {score:.3f}"
        expect(page.locator("#qa-answer")).to_have_text("kilo")
        expect(page.locator("#qa-score")).to_have_text(f"score {score:.3f} · characters 38–42")
        expect(page.locator("#qa-status")).to_be_empty()

        # no answer: said plainly, the context without a mark (Enter in the question submits)
        page.get_by_label("Context", exact=True).fill(CONTEXTS[2])
        page.locator("#qa-question").press("Enter")
        expect(page.locator("#qa-answer")).to_have_text("No answer in this context.")
        expect(box).to_have_text(CONTEXTS[2])
        expect(marks).to_have_count(0)
        expect(page.locator("#qa-score")).to_contain_text("no-answer score")

        # an empty question is caught on the page
        page.locator("#qa-question").fill(" ")
        page.get_by_role("button", name="Answer").click()
        expect(page.locator("#qa-error")).to_have_text("Type a question first.")
        page.screenshot(path=str(tmp_path / "serve-qa.png"))
        assert problems == []
    finally:
        browser_context.close()
