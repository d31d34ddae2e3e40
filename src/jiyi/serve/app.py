"""The HTTP application of `jiyi serve`: a FastAPI app around one service (a loaded run).

>>> service = load_service("runs/demo", "runs/mem")     # jiyi.serve.services: the run's service
>>> app = create_app(Settings(token="s3cret"), service)
>>> uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (JSON, OpenAPI at /openapi.json): `/` and `/static/*` (the page), `/healthz`,
`/readyz`, `/metrics` (Prometheus), `/v1/info`, and the service's routes: `/v1/predict`
(micro-batched), `/v1/explain`, `/v1/embed`, `/v1/memory/query`, `/v1/memory/add` and `/v1/ask`
(`jiyi.serve.classification`, `.ner`, `.qa` say what each answers for its kind of run).

Every error is `{"error": {"code": str, "message": str}}` and never a traceback: 400 malformed
JSON or invalid UTF-8, 401 missing or wrong token, 404 unknown path or feature, 413 body over
the limit, 422 invalid input (the message names the field), 429 queue full (Retry-After), 501
not available for this model, 503 shutting down, 504 over the per-request timeout, and 500 for
a bug (logged server-side with its traceback, shown to the client as one line). See
`jiyi.serve.errors` and `jiyi.serve.middleware`.

Model work never runs on the event loop. Predictions, embeddings and memory reads and writes
run on the one worker thread of a `MicroBatcher`, never two at a time; explanations run on an
`ExplainWorker` of their own (a copy of the model, bounded by --max-explain-cost, paused while
predictions have work, stopped when their request times out), so one long explanation never
holds predictions up. `/readyz` answers 503 while the batcher is saturated (its queue full, or
one batch over --timeout-s). A request whose Host header is not on --allowed-host's list (by
default the loopback names and --host) gets 400; the page is served with a
Content-Security-Policy that allows its own files only.
"""

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from jiyi.serve.api import Api
from jiyi.serve.batcher import MicroBatcher
from jiyi.serve.errors import ERRORS, ApiError, error_response, install_handlers
from jiyi.serve.explainer import ExplainWorker
from jiyi.serve.metrics import Metrics
from jiyi.serve.middleware import AuthMiddleware, BodyMiddleware, GuardMiddleware, HostMiddleware
from jiyi.serve.schemas import ErrorResponse, Status, request_models
from jiyi.serve.service import Service
from jiyi.serve.settings import Settings

mimetypes.add_type("text/javascript", ".js")  # whatever the OS tables say
mimetypes.add_type("text/css", ".css")
API_VERSION = "1"
PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jiyi serve</title></head>
<body><h1>jiyi serve</h1><p>The model is being served: see <a href="/v1/info">/v1/info</a>
and the API description at <a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""


def static_files(folder: Path) -> dict[str, Path]:
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


PADDED_FORWARD_BATCH = 8  # texts a forward pass holds when the model pays for padding


def forward_batch_size(settings: Settings, predictor: Any) -> int:
    """Texts a forward pass of a gathered batch holds: `--forward-batch-size` if set; else the
    whole batch where the model runs on real tokens only (`jiyi.unpadded`: 32 random Rotten
    Tomatoes texts in one pass 350-387 texts/s, in passes of 8 304-309), and passes of 8 of
    the batch sorted by length where it pays for padding (one pass 133 texts/s, passes of 8
    194): short texts are then not padded to the longest one."""
    if settings.forward_batch_size is not None:
        return settings.forward_batch_size
    if getattr(predictor, "unpadded", False):
        return settings.max_batch_size
    return PADDED_FORWARD_BATCH


def create_app(settings: Settings, service: Service) -> FastAPI:
    """The FastAPI app serving `service` (`jiyi.serve.services.load_service` gives the one of a
    run folder; the model was loaded and warmed up there). The batcher's worker starts with the
    app (lifespan) and drains its queue when the app stops."""
    metrics = Metrics()
    if hasattr(service.predictor, "batch_size"):
        service.predictor.batch_size = forward_batch_size(settings, service.predictor)
    if hasattr(service.predictor, "max_batch_tokens"):
        service.predictor.max_batch_tokens = settings.forward_tokens
    batcher = MicroBatcher(
        service.predict,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        enabled=settings.batching,
        on_batch=metrics.batch,
        on_queue=metrics.queue_depth.set,
    )
    explainer = ExplainWorker(yield_to=batcher.wait_idle, max_queue=settings.explain_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        explainer.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            explainer.cancel_all()  # explanations stop at once; predictions drain
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, explainer.close)
            await loop.run_in_executor(None, batcher.close)

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
    app.state.explainer = explainer
    app.state.metrics = metrics
    install_handlers(app, settings)
    # the token is checked by AuthMiddleware before the body is read; this only documents it
    bearer = HTTPBearer(auto_error=False, description="the server's --token")
    auth = [Depends(bearer)] if settings.token else []

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
        path = static_files(settings.static_dir).get(name)
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
        responses={503: {"model": ErrorResponse, "description": "not ready, and why"}},
    )
    async def readyz(request: Request) -> Any:
        if not request.app.state.ready or batcher.closing:
            return error_response(503, "not ready: the model is loading or the server is stopping.")
        saturated = batcher.saturation(settings.timeout_s)
        if saturated is not None:
            return error_response(
                503, f"not ready: {saturated}", code="saturated", headers={"Retry-After": "1"}
            )
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

    # -- the API: /v1/info, then the service's routes

    api = Api(app, settings, request_models(settings), batcher, auth, explainer)

    @app.get("/v1/info", response_model=service.info_model, **api.v1())
    async def info() -> dict[str, Any]:
        return service.info(settings)

    service.add_routes(api)

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
    app.add_middleware(HostMiddleware, allowed=list(settings.allowed_hosts))
    app.add_middleware(GuardMiddleware, metrics=metrics)
    return app


__all__ = ["API_VERSION", "create_app", "static_files"]
