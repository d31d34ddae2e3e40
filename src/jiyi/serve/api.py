"""`Api`: what a service's routes need from the app being built (settings, request models,
the /v1 token dependency, the micro-batcher, the explanation worker). `create_app` makes one
and hands it to the service's `add_routes`; the shared routes in `jiyi.serve.routes` take it
too."""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from fastapi import FastAPI

from jiyi.serve.batcher import MicroBatcher
from jiyi.serve.errors import ERRORS, ApiError
from jiyi.serve.explainer import ExplainWorker
from jiyi.serve.schemas import RequestModels
from jiyi.serve.settings import Settings


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
        explainer: ExplainWorker,
    ) -> None:
        self.app = app
        self.settings = settings
        self.requests = requests
        self.batcher = batcher
        self.auth = auth
        self.explainer = explainer

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

    async def explain(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the explanation worker (its own model copy; it pauses while predictions
        run), or 504 past --timeout-s, and then the work is stopped, not left running."""
        timeout = self.settings.timeout_s
        try:
            return await asyncio.wait_for(self.explainer.submit(fn, timeout), timeout)
        except TimeoutError:
            raise ApiError(
                504,
                f"the explanation took longer than --timeout-s {timeout:g} and was stopped; "
                "send a shorter text or fewer steps, or retry when the server is less busy.",
            ) from None
