"""The /v1 routes services share, and `Api`, what a service's routes need from the app.

`create_app` adds the page, the probes, /metrics and /v1/info, then hands an `Api` to the
service's `add_routes`, which adds its own routes (POST /v1/predict, POST /v1/ask) and the
shared ones below, in the order /openapi.json lists them:

>>> def add_routes(self, api: Api) -> None:      # a service's, e.g. NerService's
...     @api.app.post("/v1/predict", response_model=EntityResponse, **api.v1())
...     async def predict(req: api.requests.entities) -> dict: ...
...     add_explain(api, self); add_embed(api, self); add_memory(api, self); add_faq(api, self)

A shared route answers 501 with the service's `*_unavailable` message where it does not apply
to the run (explanations of a NER run, the memory of a QA run), 404 for a memory endpoint when no
memory is loaded, and otherwise runs the service's method on the batcher's worker thread.
Route functions keep their names: /openapi.json derives operation ids and summaries from them.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from jiyi.serve.batcher import MicroBatcher
from jiyi.serve.errors import ERRORS, NOT_FOUND, NOT_IMPLEMENTED, ApiError
from jiyi.serve.schemas import (
    AddResponse,
    AskResponse,
    EmbedResponse,
    ExplainResponse,
    QueryResponse,
    RequestModels,
)
from jiyi.serve.settings import Settings

if TYPE_CHECKING:  # service.py imports Api from here
    from jiyi.serve.service import Service


class Api:
    """The app being built, as a service's routes see it: its settings, its request models
    (limits from the settings), the bearer-token dependency of /v1/*, and the batcher."""

    def __init__(
        self,
        app: FastAPI,
        settings: Settings,
        requests: RequestModels,
        batcher: MicroBatcher,
        auth: list[Any],
    ) -> None:
        self.app = app
        self.settings = settings
        self.requests = requests
        self.batcher = batcher
        self.auth = auth

    def v1(self, *extra: dict[int, Any]) -> dict[str, Any]:
        """The keywords of every /v1 route: its tag, the token, and the error responses it may
        give (`ERRORS`, plus `extra`) for /openapi.json."""
        responses = dict(ERRORS)
        for more in extra:
            responses |= more
        return {"tags": ["v1"], "dependencies": self.auth, "responses": responses}

    async def within_timeout(self, work: Awaitable[Any]) -> Any:
        """`work`'s result, or 504 past --timeout-s."""
        try:
            return await asyncio.wait_for(work, self.settings.timeout_s)
        except TimeoutError:
            raise ApiError(
                504,
                f"the request took longer than --timeout-s {self.settings.timeout_s:g}; send "
                "fewer texts or retry later.",
            ) from None

    def submit(self, items: list[Any], key: Hashable) -> Awaitable[list[Any]]:
        """Items into the micro-batcher (gathered with other requests' of the same `key` into
        one `service.predict` call): their result rows, in order."""
        return self.within_timeout(self.batcher.submit(items, key=key))

    def on_worker(self, fn: Callable[[], Any]) -> Awaitable[Any]:
        """`fn()` on the batcher's worker thread (never two model calls at a time)."""
        return self.within_timeout(self.batcher.run(fn))


def memory_errors(service: "Service") -> tuple[dict[int, Any], ...]:
    """What a memory endpoint may answer besides 200: 404 without a memory, and 501 for a run
    that takes none."""
    return (NOT_FOUND, NOT_IMPLEMENTED) if service.memory_unavailable else (NOT_FOUND,)


def need_memory(service: "Service") -> None:
    """501 for a run that takes no memory, 404 when none is loaded."""
    if service.memory_unavailable:
        raise ApiError(501, service.memory_unavailable)
    if service.memory is None:
        raise ApiError(404, "no memory is loaded; start the server with --memory MEM_DIR.")


def add_explain(api: Api, service: "Service") -> None:
    """POST /v1/explain: integrated-gradients word scores and attention maps of one text."""
    ExplainRequest = api.requests.explain

    @api.app.post("/v1/explain", response_model=ExplainResponse, **api.v1(NOT_IMPLEMENTED))
    async def explain(req: ExplainRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.explain_unavailable:
            raise ApiError(501, service.explain_unavailable)
        return await api.on_worker(lambda: service.explain(req.text, req.steps))


def add_embed(api: Api, service: "Service") -> None:
    """POST /v1/embed: the run's encoder, mean-pooled and L2-normalised."""
    EmbedRequest = api.requests.embed

    @api.app.post("/v1/embed", response_model=EmbedResponse, **api.v1(NOT_IMPLEMENTED))
    async def embed(req: EmbedRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.embed_unavailable:
            raise ApiError(501, service.embed_unavailable)
        return await api.on_worker(lambda: service.embed(req.texts))


def add_memory(api: Api, service: "Service") -> None:
    """POST /v1/memory/query (nearest rows) and POST /v1/memory/add (new rows)."""
    QueryRequest, AddRequest = api.requests.query, api.requests.add
    errors = memory_errors(service)

    @api.app.post("/v1/memory/query", response_model=QueryResponse, **api.v1(*errors))
    async def memory_query(req: QueryRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        need_memory(service)
        return await api.on_worker(lambda: service.query(req.texts, req.k))

    @api.app.post("/v1/memory/add", response_model=AddResponse, **api.v1(*errors))
    async def memory_add(req: AddRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        need_memory(service)
        n = len(req.texts)
        for what, values in (("labels", req.labels), ("payload", req.payload), ("ids", req.ids)):
            if values is not None and len(values) != n:
                raise ApiError(422, f"{what}: {len(values)} given for {n} texts; give one each.")
        return await api.on_worker(lambda: service.add(req.texts, req.labels, req.payload, req.ids))


def add_faq(api: Api, service: "Service") -> None:
    """POST /v1/ask from a FAQ memory: the answer of the nearest stored question."""
    AskRequest = api.requests.ask

    @api.app.post("/v1/ask", response_model=AskResponse, **api.v1(*memory_errors(service)))
    async def ask(req: AskRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        need_memory(service)
        if not service.faq:
            raise ApiError(
                404,
                "the memory holds no answers; build an FAQ memory with --payload ANSWER_COLUMN.",
            )
        return await api.on_worker(lambda: service.ask(req.question, req.top_k))


__all__ = [
    "Api",
    "add_embed",
    "add_explain",
    "add_faq",
    "add_memory",
    "memory_errors",
    "need_memory",
]
