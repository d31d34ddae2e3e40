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
import mimetypes
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from jiyi.errors import JiyiError
from jiyi.serve.batcher import MicroBatcher
from jiyi.serve.errors import (
    ERRORS,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    ApiError,
    error_response,
    install_handlers,
)
from jiyi.serve.metrics import Metrics
from jiyi.serve.middleware import AuthMiddleware, BodyMiddleware, GuardMiddleware
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

mimetypes.add_type("text/javascript", ".js")  # whatever the OS tables say
mimetypes.add_type("text/css", ".css")
API_VERSION = "1"
PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jiyi serve</title></head>
<body><h1>jiyi serve</h1><p>The model is being served: see <a href="/v1/info">/v1/info</a>
and the API description at <a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""

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


# ---- the app -----------------------------------------------------------------------------------


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
    install_handlers(app, settings)
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
