"""Explanations on their own worker thread, bounded by cost, yielding to predictions, and
stopped for real when their request gives up.

>>> worker = ExplainWorker(yield_to=batcher.wait_idle, max_queue=4)
>>> worker.start()
>>> result = await worker.submit(lambda: service.explain(text, steps), deadline_s=30)
>>> worker.close()                            # cancels what runs, refuses what waits

Why a worker of its own: integrated gradients on a long text run for seconds to minutes; on
the prediction batcher's one thread they held every /v1/predict and /v1/embed behind them (all
504), and an abandoned explanation kept computing after its 504.

- **Its own model.** The explanation runs on a private copy of the model (`copy_for_explaining`
  in the service) with `install_checkpoints` on every module: captum's hooks and the eager
  attention it switches on never touch the model predictions run on, and every module's
  forward pass first calls `checkpoint()`.
- **Cancellable.** `checkpoint()` raises `Cancelled` once the job is cancelled (its request
  timed out or went away, or the server is stopping) or past its deadline: the work stops at
  the next module, milliseconds later, and the worker takes the next job.
- **Predictions first.** `checkpoint()` also waits while the prediction batcher has work
  (`yield_to`): an explanation pauses at a module boundary while a batch runs, so predictions
  keep their latency on a 2-core machine instead of sharing the cores with it (under a steady
  stream of predictions an explanation may so reach --timeout-s: 504, and it stops).
- **Bounded by cost.** `plan_steps` scales integrated-gradients steps down to fit
  --max-explain-cost (tokens x steps) and refuses (422, naming the flag) a text too long for
  even `MIN_STEPS` steps.
- **Bounded queue.** One explanation runs, `max_queue` wait; more get 429.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from jiyi.serve.batcher import BatcherClosed, QueueFull, resolve_future
from jiyi.serve.pools import on_passing_thread

MIN_STEPS = 8  # fewer integrated-gradients steps say little: such a text is refused instead
YIELD_POLL_S = 0.05  # how often a paused explanation looks at its cancel flag


class Cancelled(Exception):
    """Raised inside an explanation at the next module boundary once its job is cancelled."""


class ExplainTooCostly(Exception):
    """The text is too long to explain within --max-explain-cost, even at MIN_STEPS steps."""


@dataclass(eq=False)
class ExplainJob:
    """One explanation: the work, the caller's future, a cancel flag and a deadline."""

    fn: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    deadline: float  # time.monotonic() past which the work stops by itself
    cancelled: threading.Event = field(default_factory=threading.Event)
    reason: BaseException | None = None  # what the caller gets when cancelled (shutdown: 503)

    def cancel(self, reason: BaseException | None = None) -> None:
        if reason is not None and self.reason is None:
            self.reason = reason
        self.cancelled.set()

    def check(self) -> None:
        """Raise Cancelled when cancelled or past the deadline."""
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            raise Cancelled()


CURRENT = threading.local()  # .job: the ExplainJob this thread runs, .yield_to: the pause


def checkpoint() -> None:
    """Called before every module's forward pass of the explaining model: raise Cancelled when
    the running job is cancelled or late, and wait while predictions have work. A no-op on a
    thread that runs no job (so the copy also works outside the worker)."""
    job: ExplainJob | None = getattr(CURRENT, "job", None)
    if job is None:
        return
    job.check()
    yield_to = getattr(CURRENT, "yield_to", None)
    if yield_to is not None:
        while not yield_to(YIELD_POLL_S):
            job.check()


def install_checkpoints(model: Any) -> list[Any]:
    """A forward pre-hook calling `checkpoint()` on every module of `model` (a torch module):
    cancellation and yielding at the granularity of one layer's piece. Returns the handles."""

    def hook(module: Any, args: Any) -> None:
        checkpoint()

    return [m.register_forward_pre_hook(hook) for m in model.modules()]


def plan_steps(window_tokens: int, steps: int, max_cost: int) -> int:
    """The integrated-gradients steps to run for `window_tokens` tokens (summed over the
    windows of a long text): `steps`, or fewer so that tokens x steps <= `max_cost`; raises
    ExplainTooCostly when fewer than MIN_STEPS would fit.

    >>> plan_steps(100, 32, 16384), plan_steps(1000, 32, 16384)
    (32, 16)
    >>> plan_steps(4000, 32, 16384)
    Traceback (most recent call last):
    jiyi.serve.explainer.ExplainTooCostly: ...
    """
    fit = max_cost // max(1, window_tokens)
    if fit >= steps:
        return steps
    if fit >= min(MIN_STEPS, steps):
        return int(fit)
    longest = max_cost // min(MIN_STEPS, steps)
    raise ExplainTooCostly(
        f"text: {window_tokens} tokens to explain (counted over the model's windows) need "
        f"{window_tokens * min(MIN_STEPS, steps)} token-steps at {min(MIN_STEPS, steps)} "
        f"integrated-gradients steps, over --max-explain-cost {max_cost} (about {longest} "
        "tokens at most); send a shorter text, or start the server with a larger "
        "--max-explain-cost."
    )


class ExplainWorker:
    """One thread that runs explanations one at a time, `max_queue` more waiting.

    `yield_to(timeout) -> bool` (the batcher's `wait_idle`) says whether predictions are idle;
    while they are not, the running explanation waits at its next checkpoint.
    """

    def __init__(
        self,
        *,
        yield_to: Callable[[float], bool] | None = None,
        max_queue: int = 4,
        name: str = "jiyi-explain",
    ) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.yield_to = yield_to
        self.max_queue = int(max_queue)
        self.name = name
        self._pending: deque[ExplainJob] = deque()
        self._running: ExplainJob | None = None
        self._running_since: float | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.completed = 0  # jobs that finished (result or error)
        self.cancelled = 0  # jobs stopped part-way or before they started

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._closing = False
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    def cancel_all(self, message: str = "the server is stopping; retry later.") -> None:
        """Stop the running explanation and every waiting one (their callers get 503); new
        ones are refused. What SIGTERM calls first, so shutdown never waits for them."""
        with self._cond:
            self._closing = True
            jobs = list(self._pending) + ([self._running] if self._running else [])
            self._pending.clear()
            self._cond.notify_all()
        for job in jobs:
            job.cancel(BatcherClosed(message))
            self._deliver(job, None, job.reason)

    def close(self, timeout: float | None = 10.0) -> None:
        """Cancel everything (see `cancel_all`) and join the thread."""
        self.cancel_all()
        with self._cond:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            if self._thread is thread and (thread is None or not thread.is_alive()):
                self._thread = None

    @property
    def busy_s(self) -> float:
        """Seconds the running explanation has run (0 when idle)."""
        since = self._running_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # ---- the caller's side ---------------------------------------------------------------

    async def submit(self, fn: Callable[[], Any], deadline_s: float) -> Any:
        """`fn()` on the worker, stopped past `deadline_s` seconds from now. Raises QueueFull
        (429) when `max_queue` explanations already wait, BatcherClosed (503) while stopping.
        When the awaiting task is cancelled (asyncio.wait_for's timeout), the job is cancelled
        too: dropped if it waits, stopped at its next checkpoint if it runs."""
        loop = asyncio.get_running_loop()
        job = ExplainJob(fn, loop, loop.create_future(), time.monotonic() + deadline_s)
        with self._cond:
            if self._closing or self._thread is None:
                raise BatcherClosed("the server is shutting down; no new work is accepted.")
            if self._running is not None and len(self._pending) >= self.max_queue:
                raise QueueFull(
                    f"the explanation queue is full (1 running, {len(self._pending)} waiting); "
                    "retry later.",
                    max(1, min(60, int(self.busy_s) + 1)),
                )
            self._pending.append(job)
            self._cond.notify_all()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _withdraw(self, job: ExplainJob) -> None:
        job.cancel()
        with self._cond, suppress(ValueError):
            self._pending.remove(job)
            self.cancelled += 1

    # ---- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._closing:
                        return
                    self._cond.wait()
                job = self._pending.popleft()
                self._running, self._running_since = job, time.monotonic()
            try:  # on a passing thread: no second lasting OpenMP pool (jiyi.serve.pools)
                on_passing_thread(lambda job=job: self._run(job), self.name)
            finally:
                with self._cond:
                    self._running, self._running_since = None, None

    def _run(self, job: ExplainJob) -> None:
        CURRENT.job, CURRENT.yield_to = job, self.yield_to
        try:
            job.check()
            result = job.fn()
        except Cancelled:
            self.cancelled += 1
            if job.reason is not None:
                self._deliver(job, None, job.reason)
            return  # the caller gave up (504) or is told why (503)
        except Exception as e:
            self.completed += 1
            self._deliver(job, None, e)
            return
        finally:
            CURRENT.job = CURRENT.yield_to = None
        self.completed += 1
        self._deliver(job, result, None)

    @staticmethod
    def _deliver(job: ExplainJob, result: Any, error: BaseException | None) -> None:
        with suppress(RuntimeError):  # the caller's loop is closed: nobody waits any more
            job.loop.call_soon_threadsafe(resolve_future, job.future, result, error)


__all__ = [
    "MIN_STEPS",
    "Cancelled",
    "ExplainJob",
    "ExplainTooCostly",
    "ExplainWorker",
    "checkpoint",
    "install_checkpoints",
    "plan_steps",
]
