"""The /v1 routes services share (`Api`, what they need from the app, is in `jiyi.serve.api`).

`create_app` adds the page, the probes, /metrics and /v1/info, then hands an `Api` to the
service's `add_routes`, which adds its own routes (POST /v1/predict, POST /v1/ask) and the
shared ones below, in the order /openapi.json lists them:

>>> def add_routes(self, api: Api) -> None:      # a service's, e.g. NerService's
...     @api.app.post("/v1/predict", response_model=EntityResponse, **api.v1())
...     async def predict(req: api.requests.entities) -> dict: ...
...     add_explain(api, self); add_embed(api, self); add_memory(api, self); add_faq(api, self)

A shared route answers 501 with the service's `*_unavailable` message where it does not apply
to the run (explanations of a NER run, the memory of a QA run), 404 for a memory endpoint when no
memory is loaded, and otherwise runs the service's method on the batcher's worker thread, or,
for an explanation, on the explanation worker (`jiyi.serve.explainer`) after its cost is
planned on the event loop (steps scaled down to --max-explain-cost, or 422).
Route functions keep their names: /openapi.json derives operation ids and summaries from them.
"""

from typing import Any

from jiyi.serve.api import Api
from jiyi.serve.errors import NOT_FOUND, NOT_IMPLEMENTED, ApiError
from jiyi.serve.explainer import ExplainTooCostly
from jiyi.serve.schemas import (
    AddResponse,
    AskResponse,
    EmbedResponse,
    ExplainResponse,
    QueryResponse,
)
from jiyi.serve.service import Service


def memory_errors(service: Service) -> tuple[dict[int, Any], ...]:
    """What a memory endpoint may answer besides 200: 404 without a memory, and 501 for a run
    that takes none."""
    return (NOT_FOUND, NOT_IMPLEMENTED) if service.memory_unavailable else (NOT_FOUND,)


def need_memory(service: Service) -> None:
    """501 for a run that takes no memory, 404 when none is loaded."""
    if service.memory_unavailable:
        raise ApiError(501, service.memory_unavailable)
    if service.memory is None:
        raise ApiError(404, "no memory is loaded; start the server with --memory MEM_DIR.")


def add_explain(api: Api, service: Service) -> None:
    """POST /v1/explain: integrated-gradients word scores and attention maps of one text, with
    the steps scaled down for a long text (`steps` says how many ran), 422 for a text too long
    to explain within --max-explain-cost."""
    ExplainRequest = api.requests.explain

    @api.app.post("/v1/explain", response_model=ExplainResponse, **api.v1(NOT_IMPLEMENTED))
    async def explain(req: ExplainRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.explain_unavailable:
            raise ApiError(501, service.explain_unavailable)
        try:
            steps = service.explain_steps(req.text, req.steps, api.settings.max_explain_cost)
        except ExplainTooCostly as e:
            raise ApiError(422, str(e), code="explain_too_costly") from None
        result = await api.explain(lambda: service.explain(req.text, steps))
        return result | {"steps": steps, "steps_requested": req.steps}


def add_embed(api: Api, service: Service) -> None:
    """POST /v1/embed: the run's encoder, mean-pooled and L2-normalised."""
    EmbedRequest = api.requests.embed

    @api.app.post("/v1/embed", response_model=EmbedResponse, **api.v1(NOT_IMPLEMENTED))
    async def embed(req: EmbedRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        if service.embed_unavailable:
            raise ApiError(501, service.embed_unavailable)
        return await api.on_worker(lambda: service.embed(req.texts))


def add_memory(api: Api, service: Service) -> None:
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


def add_faq(api: Api, service: Service) -> None:
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
