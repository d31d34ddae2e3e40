"""The HTTP application of `jiyi serve`: a FastAPI app around one loaded model (and a memory).

>>> app = create_app(Settings(token="s3cret"), jiyi.load("runs/rt"), Memory.open("runs/mem"))
>>> uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (JSON, OpenAPI at /openapi.json): `/` and `/static/*` (the page), `/healthz`,
`/readyz`, `/metrics` (Prometheus), `/v1/info`, `/v1/predict` (micro-batched),
`/v1/explain`, `/v1/embed`, `/v1/memory/query`, `/v1/memory/add` and `/v1/ask`.

Every error is `{"error": {"code": str, "message": str}}` and never a traceback: 400 malformed
JSON or invalid UTF-8, 401 missing or wrong token, 404 unknown path or feature, 413 body over
the limit, 422 invalid input (the message names the field), 429 queue full (Retry-After), 501
not available for this model, 503 shutting down, 504 over the per-request timeout, and 500 for
a bug (logged server-side with its traceback, shown to the client as one line).

All model work (predictions, explanations, embeddings, memory reads and writes) runs on the
one worker thread of a `MicroBatcher`, never on the event loop and never two at a time.

A NER run (`jiyi.ner.predict.NerTagger`) is served by `jiyi.serve.ner.NerService`: /v1/predict
answers entities (its request also takes pre-tokenised `tokens`), /v1/info adds the entity
types, and explanations and the memory endpoints answer 501.

A QA run (`jiyi.qa.predict.QuestionAnswerer`) is served by `jiyi.serve.qa.QaService`: /v1/ask
takes {"question", "context"} (or {"questions", "contexts"}) and answers spans of the context
with character offsets (not the FAQ answers of a memory, which are for classification runs);
/v1/predict, explanations and the memory endpoints answer 501.
"""

import asyncio
import hmac
import logging
import mimetypes
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiyi.errors import JiyiError
from jiyi.serve.batcher import BatcherClosed, MicroBatcher, QueueFull
from jiyi.serve.ner import NerService, is_ner
from jiyi.serve.qa import QaService, is_qa
from jiyi.serve.schemas import (
    AddResponse,
    AskResponse,
    EmbedResponse,
    EntityResponse,
    ErrorResponse,
    ExplainResponse,
    InfoResponse,
    NerInfoResponse,
    PredictResponse,
    QaAnswer,
    QaAnswers,
    QaInfoResponse,
    QueryResponse,
    Status,
    request_models,
)
from jiyi.serve.settings import Settings

log = logging.getLogger("jiyi.serve")

mimetypes.add_type("text/javascript", ".js")  # whatever the OS tables say
mimetypes.add_type("text/css", ".css")
API_VERSION = "1"
DRAIN_LIMIT = 64 << 20  # an oversized body is read (and dropped) up to this, then cut off
PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jiyi serve</title></head>
<body><h1>jiyi serve</h1><p>The model is being served: see <a href="/v1/info">/v1/info</a>
and the API description at <a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error response: status, a short code and a message for the client."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, message: str, *, code: str | None = None, headers: dict | None = None
) -> JSONResponse:
    """The one error shape: {"error": {"code", "message"}}."""
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


# ---- the model side (runs on the worker thread) ---------------------------------------------


class Service:
    """The loaded classifier (and memory) and what each endpoint does with them.

    Every method but the constructor runs on the batcher's worker thread. The constructor does
    the slow, failure-prone work up front (tuning kNN-augmented prediction, loading the memory's
    encoder, a first forward pass), so a bad model or memory fails before the port is bound.
    """

    def __init__(self, classifier: Any, memory: Any = None, *, name: str | None = None):
        self.clf = classifier
        self.memory = memory
        meta = dict(getattr(classifier, "meta", {}) or {})
        if meta.get("text_pair_column"):
            raise JiyiError(
                f"{classifier.model_dir}: this run was trained on text pairs; jiyi serve "
                "handles single texts."
            )
        model_dir = Path(classifier.model_dir)
        self.name = name or (model_dir.parent.name if model_dir.name == "model" else model_dir.name)
        self.format = str(meta.get("format", "torch"))
        self.task = str(
            meta.get("task") or ("multilabel" if classifier.multilabel else "classification")
        )
        self.labelled = memory is not None and bool(memory.labels())
        manifest = memory.manifest if memory is not None else {}
        self.faq = memory is not None and bool(
            manifest.get("payload_columns") or manifest.get("answer_column") or "ask" in manifest
        )
        self.explain_unavailable = self._explain_unavailable()
        self.embed_unavailable = (
            None
            if self.format == "torch"
            else f"embeddings need the PyTorch model; this one is {self.format}."
        )
        self._augmented: Any = None
        self._augmented_seq: Any = None
        if memory is not None:
            _ = memory.encoder  # load it now (and check its fingerprint)
        if self.labelled:
            self._augmenter()
        self.labels: list[str] = list(classifier.labels)
        self.memory_info: dict[str, Any] | None = None
        self._refresh_info()
        self.clf.predict(["warm up"])

    def _explain_unavailable(self) -> str | None:
        if self.format != "torch":
            return (
                f"explanations need the PyTorch model; this one is {self.format} (serve the "
                "original run to explain)."
            )
        try:
            import captum.attr  # noqa: F401
        except ImportError:
            return "explanations need captum, which is not installed: pip install 'jiyi[inspect]'."
        return None

    # -- predictions

    def _augmenter(self) -> Any:
        """The kNN-augmented predictor, rebuilt when the memory changed (rows added here or by
        another process): labels, k, temperature and λ as `jiyi predict --memory` has them."""
        from jiyi.memory.predict import AugmentedPredictor

        self.memory.refresh()
        seq = self.memory.state.seq
        if self._augmented is None or seq != self._augmented_seq:
            self._augmented = AugmentedPredictor(self.clf, self.memory)
            if self._augmented_seq is not None:
                self._refresh_info()  # rows came from elsewhere (another process)
            self._augmented_seq = seq
        return self._augmented

    def predict(self, texts: list[str], neighbours: Hashable) -> list[dict[str, Any]]:
        if self.labelled:
            return self._augmenter().predict(texts, neighbours=int(neighbours or 0))
        return self.clf.predict(texts)

    # -- explanations and embeddings

    def explain(self, text: str, steps: int) -> dict[str, Any]:
        import numpy as np

        from jiyi.inspect.explain import explain_text

        record = explain_text(
            self.clf, text, n_steps=steps, keep_maps=True, max_k=1, n_random=1
        )  # the deletion test is not returned: keep it to its minimum
        scores = record["scores"]["words"]["integrated_gradients"]
        maps = record["attention"]["maps"]
        return {
            "label": record["predicted"],
            "probabilities": record["probabilities"],
            "words": [
                {"word": w["text"], "score": float(s)}
                for w, s in zip(record["words"], scores, strict=True)
            ],
            "tokens": record["tokens"],
            "attention": {
                "layers": record["attention"]["layers"],
                "heads": record["attention"]["heads"],
                "maps": None if maps is None else np.round(np.asarray(maps, float), 4).tolist(),
            },
        }

    def embed(self, texts: list[str]) -> dict[str, Any]:
        from jiyi.serve.embedding import embed_payload

        clf = self.clf
        return embed_payload(clf.model, clf.tokenizer, texts, clf.max_length, str(clf.model_dir))

    # -- the memory

    def query(self, texts: list[str], k: int) -> dict[str, Any]:
        return {"results": self.memory.query(texts, k=k)}

    def add(
        self,
        texts: list[str],
        labels: list[Any] | None,
        payload: list[Any] | None,
        ids: list[str] | None,
    ) -> dict[str, Any]:
        new_ids = self.memory.add(texts, labels=labels, payload=payload, ids=ids)
        self._refresh_info()
        return {"ids": new_ids, "rows": len(self.memory)}

    def ask(self, question: str, top_k: int) -> dict[str, Any]:
        from jiyi.memory.faq import ask

        r = ask(self.memory, [question], top_k=top_k)[0]
        keys = ("answered", "answer", "score", "matched_question", "id", "threshold")
        return {k: r[k] for k in keys} | {"alternatives": r["alternatives"]}

    def _refresh_info(self) -> None:
        """What /v1/info shows of the memory and the labels, computed on the worker thread
        (the event loop reads the result, never the memory while it changes)."""
        if self.memory is None:
            return
        from jiyi.memory.classify import extend_labels

        names = self.memory.labels()
        self.labelled = bool(names)
        rows = self.memory.state.rows
        counts: Counter[str] = Counter()
        for i in rows.live():
            label = rows.labels[i]
            counts.update(label if isinstance(label, list) else [] if label is None else [label])
        self.labels = extend_labels(self.clf.labels, names) if names else list(self.clf.labels)
        self.memory_info = {
            "rows": len(self.memory),
            "labels": dict(sorted(counts.items())),
            "faq": self.faq,
        }

    def info(self, settings: Settings) -> dict[str, Any]:
        return {
            "model": self.name,
            "format": self.format,
            "task": self.task,
            "labels": self.labels,
            "max_length": int(self.clf.max_length),
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": float(settings.max_wait_ms),
            },
            "memory": self.memory_info,
            "features": {
                "predict": True,
                "explain": self.explain_unavailable is None,
                "embed": self.embed_unavailable is None,
                "memory": self.memory is not None,
                "ask": self.faq,
            },
        }


# ---- metrics -----------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics in the app's own registry (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = PromCounter(
            "jiyi_requests", "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "jiyi_request_duration_seconds", "Request latency by endpoint", ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "jiyi_batch_size", "Texts per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "jiyi_batch_duration_seconds", "Seconds per forward pass",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("jiyi_queue_depth", "Texts waiting for the model", registry=r)
        self.in_flight = Gauge("jiyi_requests_in_flight", "Requests being served", registry=r)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# ---- ASGI middleware -------------------------------------------------------------------------


def _endpoint(scope: Scope) -> str:
    """The route template of a request (bounded label values), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class GuardMiddleware:
    """Outermost: metrics for every request, security headers, and the last line of defence:
    an exception that escaped everything else becomes a JSON 500 (logged, no traceback sent)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, "internal error; the server log has the details.")
                await response(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            endpoint = _endpoint(scope)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def _protected(path: str) -> bool:
    return path == "/metrics" or path == "/v1" or path.startswith("/v1/")


class AuthMiddleware:
    """Bearer-token auth for /v1/* and /metrics, checked before the body is read; the token is
    compared in constant time. /, /static/*, /healthz, /readyz and /openapi.json stay open."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                header = value
                break
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            await self.app(scope, receive, send)
            return
        if not header:
            message, challenge = (
                "missing token: send the header Authorization: Bearer TOKEN.",
                "Bearer",
            )
        else:
            message, challenge = "wrong token.", 'Bearer error="invalid_token"'
        response = error_response(401, message, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


class BodyMiddleware:
    """Reads a request body whole before the app sees it: 413 past `limit` bytes (by
    Content-Length or as streamed; the rest is read and dropped, up to DRAIN_LIMIT, so the
    client gets the answer), and 400 when a JSON body is not valid UTF-8."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        too_large = (
            f"the body is larger than --max-body-bytes {self.limit}; send fewer or shorter texts."
        )
        try:
            declared_size = int(declared) if declared is not None else None
        except ValueError:
            declared_size = None
        if declared_size is not None and declared_size > DRAIN_LIMIT:
            await error_response(413, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        over = declared_size is not None and declared_size > self.limit
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                over = True
            if not over:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > DRAIN_LIMIT:
                break
        if over:
            await error_response(413, too_large)(scope, receive, send)
            return
        body = b"".join(chunks)
        if _is_json(headers.get(b"content-type", b"").decode("latin-1")):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                message_text = f"the body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON."
                await error_response(400, message_text, code="invalid_utf8")(scope, receive, send)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---- error handlers ----------------------------------------------------------------------------


def _where(loc: tuple) -> str:
    """("body", "texts", 3) -> "texts[3]"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the body"


def _validation_message(errors: list[dict], request: Request, settings: Settings) -> str:
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        what = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return f"the body must be JSON sent with Content-Type: application/json (got {what})."
    hints = {
        ("texts", "too_long"): f" (--max-texts {settings.max_texts})",
        ("questions", "too_long"): f" (--max-texts {settings.max_texts})",
        ("contexts", "too_long"): f" (--max-texts {settings.max_texts})",
        ("string_too_long",): f" (--max-chars {settings.max_chars})",
    }
    parts = []
    for e in errors[:5]:
        loc = tuple(e.get("loc", ()))
        where = _where(loc)
        msg = str(e.get("msg", "invalid value"))
        if e.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif e.get("type") == "string_pattern_mismatch":
            msg = "the text is empty or only whitespace"
        elif e.get("type") == "missing" and where == "the body":
            msg = "a JSON object is required"
        hint = hints.get((where, e.get("type")), "") or hints.get((e.get("type"),), "")
        parts.append(f"{where}: {msg}{hint}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more + "."


def _install_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            detail = (bad_json.get("ctx") or {}).get("error", "malformed")
            loc = bad_json.get("loc", ())
            at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            message = f"the body is not valid JSON ({detail}{at})."
            return error_response(400, message, code="invalid_json")
        return error_response(422, _validation_message(errors, request, settings))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 404:
            message = f"no such endpoint: {request.method} {request.url.path[:200]}"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path[:200]}"
        elif status == 400:
            message = "the body could not be parsed as JSON."
        else:
            message = str(exc.detail)
        headers = dict(exc.headers or {})
        return error_response(status, message, headers=headers)

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(BatcherClosed)
    async def _closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(JiyiError)
    async def _user_error(request: Request, exc: JiyiError) -> JSONResponse:
        return error_response(422, str(exc))


# ---- the app -----------------------------------------------------------------------------------

ERRORS = {
    400: {"model": ErrorResponse, "description": "malformed JSON or invalid UTF-8"},
    401: {"model": ErrorResponse, "description": "missing or wrong token"},
    413: {"model": ErrorResponse, "description": "body over --max-body-bytes"},
    422: {"model": ErrorResponse, "description": "invalid input; the message names the field"},
    429: {"model": ErrorResponse, "description": "queue full; see Retry-After"},
    503: {"model": ErrorResponse, "description": "shutting down"},
    504: {"model": ErrorResponse, "description": "over --timeout-s"},
}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "no memory loaded"}}
NOT_IMPLEMENTED = {501: {"model": ErrorResponse, "description": "not available for this model"}}


def _static_files(folder: Path) -> dict[str, Path]:
    """The page's files by relative name: a client's name is looked up, never joined to a path."""
    files: dict[str, Path] = {}
    if not folder.is_dir():
        return files
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                path = Path(root) / name
                files[path.relative_to(folder).as_posix()] = path
    return files


def create_app(
    settings: Settings,
    classifier: Any,
    memory: Any = None,
    *,
    name: str | None = None,
) -> FastAPI:
    """The FastAPI app serving `classifier` (a `jiyi.predict.Classifier`, any format, or a
    `jiyi.ner.predict.NerTagger` or a `jiyi.qa.predict.QuestionAnswerer`) and, optionally, a
    `jiyi.memory.Memory` (not with a NER or QA run). The model is warmed up here; the batcher's worker starts with the app (lifespan) and
    drains its queue when the app stops."""
    ner = is_ner(classifier)
    qa = is_qa(classifier)
    service: Any = (NerService if ner else QaService if qa else Service)(
        classifier, memory, name=name
    )
    metrics = Metrics()
    if hasattr(classifier, "batch_size"):
        # A gathered batch holds texts of any length; the classifier sorts them and runs forward
        # passes of `forward_batch_size`, so short texts are not padded to the longest one:
        # 32 random Rotten Tomatoes texts ran at 133 texts/s in one pass, 194 in passes of 8.
        classifier.batch_size = settings.forward_batch_size
    batcher = MicroBatcher(
        service.predict,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        enabled=settings.batching,
        on_batch=metrics.batch,
        on_queue=metrics.queue_depth.set,
    )
    requests = request_models(settings)
    PredictRequest = requests.predict
    EntityRequest = requests.entities
    ExplainRequest = requests.explain
    EmbedRequest = requests.embed
    QueryRequest = requests.query
    AddRequest = requests.add
    AskRequest = requests.ask
    QaRequest = requests.qa

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await asyncio.get_running_loop().run_in_executor(None, batcher.close)

    app = FastAPI(
        title="jiyi serve",
        version=API_VERSION,
        description="Predictions, explanations, embeddings and memory of one jiyi model.",
        docs_url=None,  # the Swagger and ReDoc pages load scripts from a CDN: not offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.settings = settings
    app.state.service = service
    app.state.batcher = batcher
    app.state.metrics = metrics
    _install_handlers(app, settings)
    # the token is checked by AuthMiddleware before the body is read; this only documents it
    bearer = HTTPBearer(auto_error=False, description="the server's --token")
    auth = [Depends(bearer)] if settings.token else []

    async def within_timeout(work: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(work, settings.timeout_s)
        except TimeoutError:
            raise ApiError(
                504,
                f"the request took longer than --timeout-s {settings.timeout_s:g}; send fewer "
                "texts or retry later.",
            ) from None

    def on_worker(fn: Callable[[], Any]) -> Awaitable[Any]:
        return within_timeout(batcher.run(fn))

    def need_memory() -> None:
        if ner or qa:
            raise ApiError(501, service.memory_unavailable)
        if service.memory is None:
            raise ApiError(404, "no memory is loaded; start the server with --memory MEM_DIR.")

    # -- the page and probes

    @app.get("/", response_class=HTMLResponse, tags=["page"], summary="The web page")
    async def page() -> Response:
        index = settings.static_dir / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return HTMLResponse(PLACEHOLDER_PAGE)

    @app.get(
        "/static/{name:path}",
        tags=["page"],
        summary="The page's scripts and styles",
        responses={200: {"content": {"text/plain": {}}}, 404: {"model": ErrorResponse}},
    )
    async def static(name: str) -> Response:
        path = _static_files(settings.static_dir).get(name)
        if path is None:
            raise ApiError(404, f"no such file: /static/{name[:200]}")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind)

    @app.get("/healthz", response_model=Status, tags=["probes"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Status,
        tags=["probes"],
        responses={503: {"model": ErrorResponse, "description": "not ready"}},
    )
    async def readyz(request: Request) -> Any:
        if not request.app.state.ready or batcher.closing:
            return error_response(503, "not ready: the model is loading or the server is stopping.")
        return {"status": "ready"}

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=Response,
        dependencies=auth,
        responses={200: {"content": {"text/plain": {}}}, 401: ERRORS[401]},
    )
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- the API

    def v1(*extra: dict[int, Any]) -> dict[str, Any]:
        responses = dict(ERRORS)
        for more in extra:
            responses |= more
        return {"tags": ["v1"], "dependencies": auth, "responses": responses}

    info_model = NerInfoResponse if ner else QaInfoResponse if qa else InfoResponse

    @app.get("/v1/info", response_model=info_model, **v1())
    async def info() -> dict[str, Any]:
        return service.info(settings)

    if ner:

        @app.post(
            "/v1/predict",
            response_model=EntityResponse,
            response_model_exclude_none=True,
            summary="Entities of texts (character offsets) or of pre-tokenised sentences",
            **v1(),
        )
        async def predict(req: EntityRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            # raw texts and word lists are batched apart (the batcher groups by key)
            if req.tokens is not None:
                rows = await within_timeout(batcher.submit(req.tokens, key="tokens"))
            else:
                rows = await within_timeout(batcher.submit(req.texts, key="texts"))
            return {"predictions": rows}

    elif qa:

        @app.post(
            "/v1/predict",
            summary="Not for a QA run: its answers come from POST /v1/ask",
            **v1(NOT_IMPLEMENTED),
        )
        async def predict() -> dict[str, Any]:
            raise ApiError(501, service.predict_unavailable)

    else:

        @app.post(
            "/v1/predict",
            response_model=PredictResponse,
            response_model_exclude_none=True,
            **v1(),
        )
        async def predict(req: PredictRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            if req.neighbours and not service.labelled:
                raise ApiError(
                    422,
                    "neighbours: listing neighbours needs a labelled memory (serve with --memory).",
                )
            rows = await within_timeout(batcher.submit(req.texts, key=req.neighbours))
            return {"predictions": rows}

    # a NER or QA run has no memory: its memory endpoints answer 501, not 404
    memory_errors = (NOT_FOUND, NOT_IMPLEMENTED) if ner or qa else (NOT_FOUND,)

    @app.post("/v1/explain", response_model=ExplainResponse, **v1(NOT_IMPLEMENTED))
    async def explain(req: ExplainRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.explain_unavailable:
            raise ApiError(501, service.explain_unavailable)
        return await on_worker(lambda: service.explain(req.text, req.steps))

    @app.post("/v1/embed", response_model=EmbedResponse, **v1(NOT_IMPLEMENTED))
    async def embed(req: EmbedRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.embed_unavailable:
            raise ApiError(501, service.embed_unavailable)
        return await on_worker(lambda: service.embed(req.texts))

    @app.post("/v1/memory/query", response_model=QueryResponse, **v1(*memory_errors))
    async def memory_query(req: QueryRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        need_memory()
        return await on_worker(lambda: service.query(req.texts, req.k))

    @app.post("/v1/memory/add", response_model=AddResponse, **v1(*memory_errors))
    async def memory_add(req: AddRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        need_memory()
        n = len(req.texts)
        for what, values in (("labels", req.labels), ("payload", req.payload), ("ids", req.ids)):
            if values is not None and len(values) != n:
                raise ApiError(422, f"{what}: {len(values)} given for {n} texts; give one each.")
        return await on_worker(lambda: service.add(req.texts, req.labels, req.payload, req.ids))

    if qa:

        @app.post(
            "/v1/ask",
            response_model=QaAnswer | QaAnswers,
            summary="Answer questions from their contexts: a span of the context, or none",
            **v1(),
        )
        async def ask_qa(req: QaRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            # pairs from concurrent requests share forward passes (the batcher gathers them)
            if req.questions is not None:
                pairs = list(zip(req.questions, req.contexts, strict=True))
                return {"answers": await within_timeout(batcher.submit(pairs, key="qa"))}
            pair = [(req.question, req.context)]
            (row,) = await within_timeout(batcher.submit(pair, key="qa"))
            return row

    else:

        @app.post("/v1/ask", response_model=AskResponse, **v1(*memory_errors))
        async def ask(req: AskRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            need_memory()
            if not service.faq:
                raise ApiError(
                    404,
                    "the memory holds no answers; build an FAQ memory with --payload "
                    "ANSWER_COLUMN.",
                )
            return await on_worker(lambda: service.ask(req.question, req.top_k))

    # -- middleware, innermost first

    app.add_middleware(BodyMiddleware, limit=settings.max_body_bytes)
    if settings.token:
        app.add_middleware(AuthMiddleware, token=settings.token)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(GuardMiddleware, metrics=metrics)
    return app


__all__ = ["ApiError", "Service", "Settings", "create_app", "error_response"]
