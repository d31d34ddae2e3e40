"""`jiyi serve` end to end: every endpoint on the tiny model through real uvicorn servers on free
loopback ports (plain, with a memory, with a token, an ONNX int8 model), micro-batching under
concurrency, back-pressure (429), timeouts (504), graceful drain, the inputs that must get a
4xx JSON error (never a 5xx, never a traceback), auth, and the CLI's refusal to bind a public
address without a token. The micro-batcher is also tested on its own."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import error_of, metric

from conftest import make_texts
from jiyi.cli import main as run_cli
from jiyi.serve import cli as serve_cli
from jiyi.serve.app import create_app
from jiyi.serve.batcher import BatcherClosed, MicroBatcher, QueueFull
from jiyi.serve.classification import ClassificationService
from jiyi.serve.settings import STATIC_DIR, Settings

TEXTS = [t for t, _ in make_texts(12, seed=7)]


# ---- the micro-batcher on its own --------------------------------------------------------------


def test_batcher_gathers_requests_and_returns_each_its_own_results() -> None:
    batches: list[list[str]] = []

    def predict(texts: list[str], key: Any) -> list[str]:
        batches.append(list(texts))
        return [t.upper() for t in texts]

    batcher = MicroBatcher(predict, max_batch_size=8, max_wait_ms=50)
    batcher.start()
    requests = [[f"r{i}-{j}" for j in range(i % 3 + 1)] for i in range(20)]

    async def go() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    try:
        results = asyncio.run(go())
    finally:
        batcher.close()
    assert results == [[t.upper() for t in r] for r in requests]
    assert max(len(b) for b in batches) > 3  # several requests shared a forward pass
    assert all(len(b) <= 8 for b in batches)
    assert sum(len(b) for b in batches) == sum(len(r) for r in requests)


def test_batcher_under_load_groups_texts_of_like_length_and_the_oldest_leads() -> None:
    gate = threading.Event()
    batches: list[list[str]] = []

    def predict(texts: list[str], key: Any) -> list[str]:
        gate.wait(10)
        batches.append(list(texts))
        return list(texts)

    batcher = MicroBatcher(predict, max_batch_size=4, max_wait_ms=0)
    batcher.start()
    # short and long requests alternate in arrival; 8 wait where 4 fit a batch
    texts = [f"{i}" + ("s" * 5 if i % 2 == 0 else "l" * 200) for i in range(8)]

    async def go() -> list[list[str]]:
        held = asyncio.ensure_future(batcher.submit(["held"]))
        await asyncio.sleep(0.1)  # the worker holds it while the others queue
        rest = [asyncio.ensure_future(batcher.submit([t])) for t in texts]
        await asyncio.sleep(0.1)
        gate.set()
        return await asyncio.gather(held, *rest)

    try:
        results = asyncio.run(go())
    finally:
        batcher.close()
    assert results == [["held"]] + [[t] for t in texts]  # each caller its own answer
    short, long = texts[0::2], texts[1::2]
    assert batches == [["held"], short, long]  # the oldest (0, then 1) led; like joined like


def test_batcher_keeps_keys_apart_and_errors_with_their_callers() -> None:
    def predict(texts: list[str], key: Any) -> list[Any]:
        if key == "bad":
            raise ValueError("boom")
        return [key] * len(texts)

    batcher = MicroBatcher(predict, max_batch_size=16, max_wait_ms=30)
    batcher.start()

    async def go() -> list[Any]:
        calls = [
            batcher.submit(["a"], key="x"),
            batcher.submit(["b"], key="bad"),
            batcher.submit(["c", "d"], key="y"),
            batcher.submit(["e"], key="x"),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        x, bad, y, x2 = asyncio.run(go())
    finally:
        batcher.close()
    assert x == ["x"] and x2 == ["x"] and y == ["y", "y"]
    assert isinstance(bad, ValueError)


def test_batcher_disabled_runs_every_request_alone() -> None:
    sizes: list[int] = []

    def predict(texts: list[str], key: Any) -> list[str]:
        sizes.append(len(texts))
        return list(texts)

    batcher = MicroBatcher(predict, max_wait_ms=50, enabled=False)
    batcher.start()

    async def go() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit([f"{i}a", f"{i}b"]) for i in range(10)))

    try:
        results = asyncio.run(go())
    finally:
        batcher.close()
    assert results == [[f"{i}a", f"{i}b"] for i in range(10)]
    assert sizes == [2] * 10


def test_batcher_bounded_queue_timeout_and_draining_close() -> None:
    gate = threading.Event()
    computed: list[str] = []

    def predict(texts: list[str], key: Any) -> list[str]:
        gate.wait(10)
        computed.extend(texts)
        return list(texts)

    batcher = MicroBatcher(predict, max_batch_size=1, max_wait_ms=0, max_queue=2)
    batcher.start()

    async def go() -> list[list[str]]:
        first = asyncio.ensure_future(batcher.submit(["1"]))
        await asyncio.sleep(0.1)  # the worker holds it
        gone = asyncio.ensure_future(asyncio.wait_for(batcher.submit(["gone"]), 0.05))
        with pytest.raises(TimeoutError):
            await gone  # a caller that gives up is withdrawn from the queue
        second = asyncio.ensure_future(batcher.submit(["2"]))
        third = asyncio.ensure_future(batcher.submit(["3"]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as full:
            await batcher.submit(["4"])
        assert full.value.retry_after >= 1
        closing = asyncio.get_running_loop().run_in_executor(None, batcher.close)
        await asyncio.sleep(0.05)
        with pytest.raises(BatcherClosed):
            await batcher.submit(["5"])
        gate.set()
        results = await asyncio.gather(first, second, third)
        await closing
        return results

    assert asyncio.run(go()) == [["1"], ["2"], ["3"]]  # close() finished the queued work
    assert computed == ["1", "2", "3"] and batcher.queued == 0


# ---- probes, page, info -----------------------------------------------------------------------


def test_page_probes_and_metrics(server: Any) -> None:
    with server.client() as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()
        assert page.headers["x-content-type-options"] == "nosniff"
        assets = sorted(p.name for p in STATIC_DIR.glob("*") if p.is_file())
        for name in assets:
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and r.content == (STATIC_DIR / name).read_bytes()
        if "app.js" in assets:
            assert "javascript" in c.get("/static/app.js").headers["content-type"]
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nothing.js"):
            error_of(c.get(path), 404)
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        error_of(c.get("/no/such/thing"), 404)
        error_of(c.get("/v1/predict"), 405)
        c.post("/v1/predict", json={"texts": ["warm"]})
        text = c.get("/metrics").text
        assert 'jiyi_requests_total{endpoint="/v1/predict",method="POST",status="200"}' in text
        assert "jiyi_request_duration_seconds_bucket" in text and "jiyi_queue_depth" in text
        assert metric(text, "jiyi_batch_size_count") >= 1
        spec = c.get("/openapi.json").json()
        assert {"/v1/predict", "/v1/explain", "/v1/embed", "/v1/ask"} <= set(spec["paths"])


def test_readyz_says_503_until_the_app_has_started(classifier: Any) -> None:
    app = create_app(
        Settings(), ClassificationService(classifier)
    )  # its lifespan has not run: no worker yet

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.get("/readyz")

    error_of(asyncio.run(go()), 503)


def test_forward_passes_are_sized_by_the_settings(trained_run: Path, start_server: Any) -> None:
    from jiyi.predict import load

    clf = load(trained_run)
    server = start_server(
        Settings(forward_batch_size=16, forward_tokens=48), ClassificationService(clf)
    )
    assert (clf.batch_size, clf.max_batch_tokens) == (16, 48)
    texts = [t for t, _ in make_texts(20, seed=3)]
    got = httpx.post(f"{server.url}/v1/predict", json={"texts": texts}, timeout=30).json()
    expected = load(trained_run).predict(texts)
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in expected]
    assert [p["score"] for p in got["predictions"]] == pytest.approx(
        [p["score"] for p in expected], abs=1e-5
    )


def test_info(server: Any, classifier: Any) -> None:
    info = httpx.get(f"{server.url}/v1/info").json()
    assert info["format"] == "torch" and info["task"] == "classification"
    assert info["labels"] == classifier.labels == ["neg", "pos"]
    assert info["model"] == "run" and info["max_length"] == 32
    assert info["batching"] == {"enabled": True, "max_batch_size": 32, "max_wait_ms": 20.0}
    assert info["memory"] is None
    assert info["features"] == {
        "predict": True, "explain": True, "embed": True, "memory": False, "ask": False
    }  # fmt: skip


# ---- the model endpoints ----------------------------------------------------------------------


def test_predict_matches_the_classifier(server: Any, classifier: Any) -> None:
    r = httpx.post(f"{server.url}/v1/predict", json={"texts": TEXTS})
    got = r.json()["predictions"]
    expected = classifier.predict(TEXTS)
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for g, e in zip(got, expected, strict=True):
        assert set(g) == {"label", "score", "probabilities"}
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)


def test_concurrent_requests_are_batched_and_answered_in_order(
    server: Any, classifier: Any
) -> None:
    texts = [t for t, _ in make_texts(50, seed=11)]
    expected = [p["label"] for p in classifier.predict(texts)]
    before = httpx.get(f"{server.url}/metrics").text

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
            return await asyncio.gather(
                *(c.post("/v1/predict", json={"texts": [t]}) for t in texts)
            )

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["predictions"][0]["label"] for r in responses] == expected
    after = httpx.get(f"{server.url}/metrics").text
    batches = metric(after, "jiyi_batch_size_count") - metric(before, "jiyi_batch_size_count")
    singles = metric(after, 'jiyi_batch_size_bucket{le="1.0"}') - metric(
        before, 'jiyi_batch_size_bucket{le="1.0"}'
    )
    assert batches < 50 and batches - singles >= 1  # some forward passes served several callers


def test_explain(server: Any, classifier: Any) -> None:
    text = "a really moving and funny film"
    r = httpx.post(f"{server.url}/v1/explain", json={"text": text, "steps": 4}, timeout=60)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["label"] in classifier.labels and set(e["probabilities"]) == set(classifier.labels)
    # the calibrated probabilities, as /v1/predict and `jiyi predict` give them (T != 1 here)
    given = classifier.predict([text])[0]["probabilities"]
    assert e["probabilities"] == pytest.approx(given, abs=1e-4)
    raw = classifier.probabilities(classifier.logits([text]), calibrated=False)[0]
    assert np.abs(raw - [given[k] for k in classifier.labels]).max() > 1e-4
    assert [w["word"] for w in e["words"]] == text.split()
    assert all(isinstance(w["score"], float) for w in e["words"])
    assert e["tokens"][0] == "[CLS]" and e["tokens"][-1] == "[SEP]"
    att = e["attention"]
    assert (att["layers"], att["heads"]) == (2, 4)
    n = len(e["tokens"])
    assert np.asarray(att["maps"]).shape == (2, 4, n, n)
    long = " ".join(["film"] * 80)  # over the run's 32 tokens: windows, no maps
    r = httpx.post(f"{server.url}/v1/explain", json={"text": long, "steps": 2}, timeout=60)
    assert r.status_code == 200 and r.json()["attention"]["maps"] is None


def test_embed_is_the_runs_encoder_mean_pooled_and_normalised(
    server: Any, trained_run: Path, classifier: Any
) -> None:
    from jiyi.inspect.embeddings import embed_texts

    r = httpx.post(f"{server.url}/v1/embed", json={"texts": TEXTS[:3]})
    body = r.json()
    vectors = np.asarray(body["vectors"])
    assert body["dim"] == 32 and vectors.shape == (3, 32)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    expected = embed_texts(
        str(trained_run), TEXTS[:3], pooling="mean", layers="-1", normalize=True,
        max_length=classifier.max_length,
    )  # fmt: skip
    assert np.allclose(vectors, expected, atol=1e-5)


def test_memory_endpoints_without_a_memory(server: Any) -> None:
    with server.client() as c:
        error_of(c.post("/v1/memory/query", json={"texts": ["a"]}), 404)
        error_of(c.post("/v1/memory/add", json={"texts": ["a"]}), 404)
        error_of(c.post("/v1/ask", json={"question": "a"}), 404)
        e = error_of(c.post("/v1/predict", json={"texts": ["a"], "neighbours": 2}), 422)
        assert "neighbours" in e["message"]


def test_unexpected_errors_are_a_json_500_without_traceback(
    start_server: Any, classifier: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(classifier, name)

        def predict(self, texts: list[str], pairs: Any = None) -> list[dict]:
            if "explode" in texts:
                raise RuntimeError("secret internal detail")
            return classifier.predict(texts)

    server = start_server(Settings(), ClassificationService(Broken()))
    with server.client() as c:
        e = error_of(c.post("/v1/predict", json={"texts": ["explode"]}), 500)
        assert e["code"] == "internal_error" and "secret" not in e["message"]
        assert c.post("/v1/predict", json={"texts": ["fine"]}).status_code == 200
    server.stop()
    assert "secret internal detail" in caplog.text  # logged server-side


# ---- with a memory ----------------------------------------------------------------------------


def test_memory_predict_is_knn_augmented_as_jiyi_predict_memory(
    mem_server: Any, classifier: Any
) -> None:
    from jiyi.memory.knn import Memory
    from jiyi.memory.predict import AugmentedPredictor

    info = httpx.get(f"{mem_server.url}/v1/info").json()
    assert info["features"]["memory"] and info["features"]["ask"]
    assert info["memory"]["rows"] == 120 and info["memory"]["faq"] is True
    assert sum(info["memory"]["labels"].values()) == 120
    r = httpx.post(f"{mem_server.url}/v1/predict", json={"texts": TEXTS, "neighbours": 3})
    got = r.json()["predictions"]
    memory = Memory.open(mem_server.app.state.service.memory.path)
    expected = AugmentedPredictor(classifier, memory).predict(TEXTS, neighbours=3)
    for g, e in zip(got, expected, strict=True):
        assert g["label"] == e["label"]
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert [n["id"] for n in g["neighbours"]] == [n["id"] for n in e["neighbours"]]
        assert set(g["neighbours"][0]) == {"id", "score", "label", "weight"}
    plain = httpx.post(f"{mem_server.url}/v1/predict", json={"texts": TEXTS[:2]}).json()
    assert all("neighbours" not in p for p in plain["predictions"])


def test_memory_query_ask_and_add(mem_server: Any) -> None:
    with mem_server.client() as c:
        hits = c.post("/v1/memory/query", json={"texts": TEXTS[:2], "k": 3}).json()["results"]
        assert len(hits) == 2 and all(len(h) == 3 for h in hits)
        assert set(hits[0][0]) == {"id", "score", "text", "label", "payload"}
        assert hits[0][0]["payload"]["answer"].startswith("answer ")
        row = hits[0][0]
        a = c.post("/v1/ask", json={"question": row["text"], "top_k": 2}).json()
        assert a["answered"] and a["answer"] == row["payload"]["answer"]
        assert a["matched_question"] == row["text"] and a["id"] == row["id"]
        assert "confidence" in a and a["confidence"] is None  # no validation: no confidence model
        assert len(a["alternatives"]) == 1 and set(a["alternatives"][0]) == {
            "answer", "score", "matched_question", "id"
        }  # fmt: skip

        new = {
            "texts": ["meh meh so so", "so so meh"],
            "labels": ["meh", "meh"],
            "payload": [{"answer": "x"}, None],
            "ids": ["new-1", "new-2"],
        }
        added = c.post("/v1/memory/add", json=new).json()
        assert added == {"ids": ["new-1", "new-2"], "rows": 122}
        info = c.get("/v1/info").json()
        assert info["memory"]["rows"] == 122 and info["memory"]["labels"]["meh"] == 2
        assert "meh" in info["labels"]
        p = c.post("/v1/predict", json={"texts": ["meh meh so so"]}).json()["predictions"][0]
        assert "meh" in p["probabilities"]  # learnt without retraining
        error_of(c.post("/v1/memory/add", json={"texts": ["again"], "ids": ["new-1"]}), 422)
        e = error_of(c.post("/v1/memory/add", json={"texts": ["a", "b"], "labels": ["x"]}), 422)
        assert "labels" in e["message"]


# ---- limits and back-pressure -----------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
JSON = {"content-type": "application/json"}
BAD_INPUTS = [
    # (name, path, request kwargs, status, words the message must hold)
    ("malformed JSON", "/v1/predict", {"content": b'{"texts": [', "headers": JSON}, 400, "JSON"),
    ("trailing junk", "/v1/predict", {"content": b'{"texts": ["a"]} x', "headers": JSON}, 400, ""),
    ("invalid UTF-8", "/v1/predict", {"content": b'{"texts": ["\xff\xfe"]}', "headers": JSON},
     400, "UTF-8"),
    ("lone surrogate", "/v1/predict", {"content": b'{"texts": ["\\ud800"]}', "headers": JSON},
     422, "texts[0]"),
    ("deep nesting", "/v1/predict",
     {"content": b'{"texts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "headers": JSON}, 400, ""),
    ("texts a string", "/v1/predict", {"json": {"texts": "a film"}}, 422, "texts"),
    ("texts numbers", "/v1/predict", {"json": {"texts": [1, 2]}}, 422, "texts[0]"),
    ("texts null", "/v1/predict", {"json": {"texts": [None]}}, 422, "texts[0]"),
    ("no texts", "/v1/predict", {"json": {}}, 422, "texts"),
    ("empty list", "/v1/predict", {"json": {"texts": []}}, 422, "texts"),
    ("empty text", "/v1/predict", {"json": {"texts": ["ok", ""]}}, 422, "texts[1]"),
    ("blank text", "/v1/predict", {"json": {"texts": ["  \n"]}}, 422, "texts[0]"),
    ("huge text", "/v1/predict", {"json": {"texts": ["a" * 10_001]}}, 422, "--max-chars"),
    ("too many texts", "/v1/predict", {"json": {"texts": ["a"] * 65}}, 422, "--max-texts"),
    ("unknown field", "/v1/predict", {"json": {"texts": ["a"], "txt": 1}}, 422, "txt"),
    ("a list body", "/v1/predict", {"json": ["a"]}, 422, ""),
    ("neighbours a string", "/v1/predict", {"json": {"texts": ["a"], "neighbours": "2"}}, 422,
     "neighbours"),
    ("neighbours too many", "/v1/predict", {"json": {"texts": ["a"], "neighbours": 21}}, 422,
     "neighbours"),
    ("no content type", "/v1/predict", {"content": b'{"texts": ["a"]}'}, 422, "Content-Type"),
    ("text/plain", "/v1/predict",
     {"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 422,
     "application/json"),
    ("empty body", "/v1/predict", {"content": b"", "headers": JSON}, 422, ""),
    ("10 MB body", "/v1/predict", {"content": b"x" * TEN_MB, "headers": JSON}, 413,
     "--max-body-bytes"),
    ("10 MB streamed", "/v1/predict",
     {"content": iter([b"x" * (1 << 20)] * 10), "headers": JSON}, 413, "--max-body-bytes"),
    ("steps 0", "/v1/explain", {"json": {"text": "a", "steps": 0}}, 422, "steps"),
    ("steps a float", "/v1/explain", {"json": {"text": "a", "steps": 2.5}}, 422, "steps"),
    ("huge explain text", "/v1/explain", {"json": {"text": "a" * 10_001}}, 422, "text"),
    ("embed nothing", "/v1/embed", {"json": {"texts": []}}, 422, "texts"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_a_4xx_json_error(
    server: Any, path: str, kwargs: dict, status: int, words: str
) -> None:
    with server.client() as c:
        e = error_of(c.post(path, **kwargs), status)
        assert words in e["message"], e
        assert c.get("/healthz").status_code == 200


def test_full_queue_answers_429_with_retry_after(
    start_server: Any, classifier: Any, slow: Any
) -> None:
    settings = Settings(max_queue=2, batching=False, max_wait_ms=0)
    server = start_server(settings, ClassificationService(slow(classifier, 1.0)))

    async def go() -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            first = asyncio.ensure_future(c.post("/v1/predict", json={"texts": ["a"]}))
            await asyncio.sleep(0.25)  # the worker holds it
            second = asyncio.ensure_future(c.post("/v1/predict", json={"texts": ["b"]}))
            await asyncio.sleep(0.1)  # queued: 1 text of 2
            third = await c.post("/v1/predict", json={"texts": ["c", "d"]})
            return third, list(await asyncio.gather(first, second))

    third, served = asyncio.run(go())
    e = error_of(third, 429)
    assert "--max-queue" in e["message"] and int(third.headers["retry-after"]) >= 1
    assert [r.status_code for r in served] == [200, 200]
    server.stop()


def test_slow_request_answers_504(start_server: Any, classifier: Any, slow: Any) -> None:
    server = start_server(Settings(timeout_s=0.3), ClassificationService(slow(classifier, 1.0)))
    with server.client() as c:
        start = time.monotonic()
        e = error_of(c.post("/v1/predict", json={"texts": ["a"]}), 504)
        assert "--timeout-s" in e["message"] and time.monotonic() - start < 0.9
        time.sleep(0.8)  # the abandoned batch finishes; the server goes on
        assert c.get("/readyz").status_code == 200
    server.stop()


def test_shutdown_drains_requests_in_flight(start_server: Any, classifier: Any, slow: Any) -> None:
    server = start_server(Settings(), ClassificationService(slow(classifier, 1.0)))
    result: dict[str, Any] = {}

    def call() -> None:
        result["response"] = httpx.post(f"{server.url}/v1/predict", json={"texts": ["a"]})

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)  # the request is in the model
    server.stop()  # what SIGTERM does: stop accepting, wait for requests in flight
    caller.join(10)
    assert result["response"].status_code == 200
    assert result["response"].json()["predictions"][0]["label"] in classifier.labels
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


# ---- auth and binding -------------------------------------------------------------------------


def test_token_auth(token_server: Any, token: str) -> None:
    url = token_server.url
    body = {"texts": ["a"]}
    e = error_of(httpx.post(f"{url}/v1/predict", json=body), 401)
    assert "Authorization: Bearer" in e["message"]
    r = httpx.post(f"{url}/v1/predict", json=body)
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in (f"Bearer {token}x", "Bearer", f"Basic {token}", token, f"Bearer {token[:-1]}"):
        r = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": header})
        error_of(r, 401)
    # auth comes first: a stranger learns nothing about the body
    bad = httpx.post(f"{url}/v1/predict", content=b"{", headers=JSON)
    error_of(bad, 401)
    error_of(httpx.get(f"{url}/metrics"), 401)
    error_of(httpx.get(f"{url}/v1/info"), 401)
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{url}/v1/predict", json=body, headers=auth).status_code == 200
    assert httpx.get(f"{url}/metrics", headers=auth).status_code == 200
    for path in ("/", "/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(f"{url}{path}").status_code == 200, path
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_cors_is_off_by_default_and_on_for_named_origins(
    server: Any, start_server: Any, classifier: Any
) -> None:
    origin = {"Origin": "http://elsewhere.example"}
    r = httpx.post(f"{server.url}/v1/predict", json={"texts": ["a"]}, headers=origin)
    assert "access-control-allow-origin" not in r.headers
    settings = Settings(cors_origins=["http://elsewhere.example"])
    cors = start_server(settings, ClassificationService(classifier))
    r = httpx.post(f"{cors.url}/v1/predict", json={"texts": ["a"]}, headers=origin)
    assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"
    cors.stop()


def test_binding_rules() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        serve_cli.check_bind(host, None, False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(serve_cli.JiyiError, match="--insecure"):
            serve_cli.check_bind(host, None, False)
        serve_cli.check_bind(host, "a-secret-token", False)
        serve_cli.check_bind(host, None, True)
    with pytest.raises(serve_cli.JiyiError, match="empty"):
        serve_cli.check_bind("0.0.0.0", " ", False)


def test_cli_refuses_a_public_address_without_a_token(
    trained_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIYI_TOKEN", raising=False)
    assert serve_cli.main([str(trained_run), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--token" in err and "Traceback" not in err
    assert serve_cli.main([str(trained_run), "--max-texts", "0"]) == 2
    assert "--max-texts 0" in capsys.readouterr().err
    assert serve_cli.main([str(trained_run), "--forward-tokens", "0"]) == 2
    assert "--forward-tokens 0: must be at least 1" in capsys.readouterr().err


# ---- a compressed model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_int8(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "rt-int8"
    argv = ["compress", str(trained_run), "--method", "onnx-int8", "--output", str(out),
            "--no-report"]  # fmt: skip
    assert run_cli(argv) == 0
    return out


def test_onnx_int8_model_is_served_like_the_original(start_server: Any, onnx_int8: Path) -> None:
    from jiyi.predict import load

    compressed = load(onnx_int8)
    server = start_server(Settings(), ClassificationService(compressed))
    with server.client() as c:
        info = c.get("/v1/info").json()
        assert info["format"] == "onnx" and info["labels"] == ["neg", "pos"]
        assert info["features"]["explain"] is False and info["features"]["embed"] is False
        got = c.post("/v1/predict", json={"texts": TEXTS}).json()["predictions"]
        expected = compressed.predict(TEXTS)
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)
        e = error_of(c.post("/v1/explain", json={"text": "a film"}), 501)
        assert "onnx" in e["message"]
        error_of(c.post("/v1/embed", json={"texts": ["a film"]}), 501)
    server.stop()


# ---- the CLI in its own process: SIGTERM drains -----------------------------------------------

SLOW_SERVE = """
import sys, time
import jiyi.predict
predict = jiyi.predict.Classifier.predict
def slow(self, texts, pairs=None):
    if any(t.startswith("slow") for t in texts):
        time.sleep(1.5)
    return predict(self, texts, pairs)
jiyi.predict.Classifier.predict = slow
from jiyi.serve.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_serves_and_drains_on_sigterm(trained_run: Path, serve_process: Any) -> None:
    argv = ["-c", SLOW_SERVE, str(trained_run), "--port", "0", "--threads", "1"]
    with serve_process(argv) as (proc, url, log):
        assert httpx.get(f"{url}/readyz", timeout=30).json() == {"status": "ready"}
        result: dict[str, Any] = {}

        def call() -> None:
            result["r"] = httpx.post(f"{url}/v1/predict", json={"texts": ["slow one"]}, timeout=30)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        caller.join(20)
        assert result["r"].status_code == 200, result["r"].text
        assert proc.wait(20) in (0, -signal.SIGTERM)
    assert "Traceback" not in "".join(log), "".join(log)


def test_openapi_documents_the_limits(server: Any) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    text = json.dumps(spec)
    assert '"maxLength": 10000' in text and '"maxItems": 64' in text
    assert "/docs" not in spec["paths"]
