"""Dynamic micro-batching: concurrent requests gathered into one forward pass on one thread.

>>> batcher = MicroBatcher(classifier.predict, max_batch_size=32, max_wait_ms=5)
>>> batcher.start()
>>> rows = await batcher.submit(["a moving film", "two dull hours"])   # in a coroutine
>>> vectors = await batcher.run(lambda: embed(texts))                  # exclusive model use
>>> batcher.close()                                                     # drains the queue

One worker thread owns the model (it is not thread-safe; torch and ONNX Runtime parallelise
inside an operation with their own threads). Each `submit` puts its texts and an asyncio future
on a bounded queue and waits; the worker takes the oldest request, then for up to `max_wait_ms`
gathers more requests of the same kind until `max_batch_size` texts are reached (when more wait
than fit, those closest in length to the oldest), runs `predict_fn(texts, key)` once on them all
(a `Classifier` sorts by length inside the call), and hands each caller its own slice of the
results on the caller's event loop. A request is never split, so one request with more texts
than `max_batch_size` runs alone. With `enabled=False` every request is its own forward pass
(the baseline the benchmark compares with).

The queue is bounded: when `max_queue` texts (or requests) already wait, `submit` raises
`QueueFull` at once (HTTP 429 with Retry-After) instead of letting latency grow without bound.
`close()` stops accepting (`BatcherClosed`), finishes everything queued, and joins the thread.
`saturation(stall_s)` says why the batcher cannot take work in time (queue full, a batch past
`stall_s`: /readyz answers 503 with it), and `wait_idle` lets explanations (which run on their
own thread, `jiyi.serve.explainer`) pause while predictions have work.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[list[str], Hashable], Sequence[Any]]


class QueueFull(Exception):
    """The queue holds `max_queue` texts already; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class BatcherClosed(Exception):
    """The batcher is shutting down and accepts no new work."""


@dataclass(eq=False)
class _Job:
    """One caller's work: texts to predict (batchable) or a callable to run alone."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    texts: list[str] = field(default_factory=list)
    key: Hashable = None
    fn: Callable[[], Any] | None = None
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return len(self.texts) if self.fn is None else 1


class HeapTrimmer:
    """Give freed heap memory back to the OS at most once per `every_s` seconds.

    glibc keeps the freed buffers of every (batch, length) shape a forward pass allocated, so a
    server's RSS climbs: 694 -> 1,124 MB over a 5-minute soak at 32 clients. `malloc_trim(0)`
    once a second (a few ms) kept an equivalent offline loop at +3%. A no-op off glibc.
    """

    def __init__(self, every_s: float = 1.0):
        try:
            self._trim: Any = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None
        self.every_s = every_s
        self._last = time.monotonic()

    def maybe(self) -> None:
        if self._trim is None:
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._trim(0)
            self._last = time.monotonic()


def mean_chars(texts: Sequence[str]) -> float:
    """A request's length for grouping like with like: the mean characters of its texts (the
    batcher sees texts, not tokens; within one language characters track tokens)."""
    return sum(len(t) for t in texts) / max(1, len(texts))


def resolve_future(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """Runs on the caller's loop: set the outcome unless the caller gave up (timeout); the
    prediction batcher's and the explanation worker's threads both hand results back this way."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher:
    """Gathers concurrent `submit` calls into batches for `predict_fn` on one worker thread.

    `predict_fn(texts, key)` returns one result per text, in order; requests are batched only
    with requests of the same `key` (e.g. how many neighbours to list). `on_batch(size,
    seconds)` and `on_queue(texts_waiting)` are metrics hooks, called from the worker thread
    and from `submit`.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        enabled: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        name: str = "jiyi-model",
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self.predict_fn = predict_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.enabled = bool(enabled)
        self.on_batch = on_batch
        self.on_queue = on_queue
        self.name = name
        self._pending: deque[_Job] = deque()
        self._queued = 0  # texts (or callables) waiting, not yet taken by the worker
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._seconds_per_batch = 0.05  # running estimate, for Retry-After
        self._last_callers = 2  # callers in the previous batch (2: wait for company at first)
        self._running_since: float | None = None  # when the worker took the batch it runs
        self._idle = threading.Event()  # nothing waits and nothing runs
        self._idle.set()

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is not None:
                return
            self._closing = False
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work, finish what is queued, then stop the worker thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            if self._thread is thread and (thread is None or not thread.is_alive()):
                self._thread = None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queued(self) -> int:
        """Texts (and callables) waiting for the worker."""
        return self._queued

    @property
    def busy_s(self) -> float:
        """Seconds the worker has been on its current batch (0 when idle)."""
        since = self._running_since
        return 0.0 if since is None else time.monotonic() - since

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no request waits and none runs; whether it is so.
        Explanations (`jiyi.serve.explainer`) pause on this: predictions go first."""
        return self._idle.wait(timeout)

    def saturation(self, stall_s: float) -> str | None:
        """Why the batcher cannot take work in reasonable time, or None: its queue is full, or
        one batch (or the oldest waiting request) has taken more than `stall_s` seconds."""
        with self._cond:
            queued, pending = self._queued, len(self._pending)
            oldest = self._pending[0].enqueued if self._pending else None
            since = self._running_since
        now = time.monotonic()
        if queued >= self.max_queue or pending >= self.max_queue:
            return (
                f"the prediction queue is full ({queued} texts waiting, --max-queue "
                f"{self.max_queue})."
            )
        if since is not None and now - since > stall_s:
            return f"the model worker has been on one batch for {now - since:.0f} s."
        if oldest is not None and now - oldest > stall_s:
            return f"the oldest waiting request has waited {now - oldest:.0f} s."
        return None

    # ---- the caller's side ---------------------------------------------------------------

    async def submit(self, texts: Sequence[str], key: Hashable = None) -> list[Any]:
        """`predict_fn` results for `texts`, in order, computed in a batch with other callers'.

        Raises QueueFull when the queue is full and BatcherClosed while shutting down; an
        exception of `predict_fn` is raised here (and only to the callers of that batch).
        """
        texts = list(texts)
        if not texts:
            return []
        job = _Job(asyncio.get_running_loop(), asyncio.get_running_loop().create_future(), texts)
        job.key = key
        return await self._enqueue(job)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the worker thread, alone (never concurrently with a batch): model access
        other than predictions (explanations, embeddings, memory writes) is serialised too."""
        loop = asyncio.get_running_loop()
        return await self._enqueue(_Job(loop, loop.create_future(), fn=fn))

    async def _enqueue(self, job: _Job) -> Any:
        with self._cond:
            if self._closing or self._thread is None:
                raise BatcherClosed("the server is shutting down; no new work is accepted.")
            if self._pending and (
                self._queued + job.size > self.max_queue or len(self._pending) >= self.max_queue
            ):
                raise QueueFull(
                    f"the queue is full ({self._queued} texts waiting, --max-queue "
                    f"{self.max_queue}); retry later.",
                    self._retry_after(),
                )
            self._pending.append(job)
            self._queued += job.size
            self._idle.clear()
            depth = self._queued
            self._cond.notify_all()
        self._report_queue(depth)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)  # the caller timed out or went away: do not compute it
            raise

    def _withdraw(self, job: _Job) -> None:
        with self._cond:
            try:
                self._pending.remove(job)
            except ValueError:
                return  # already taken by the worker
            self._queued -= job.size
            if not self._pending and self._running_since is None:
                self._idle.set()
            depth = self._queued
        self._report_queue(depth)

    def _retry_after(self) -> int:
        batches = self._queued / self.max_batch_size + 1
        return max(1, min(60, math.ceil(batches * self._seconds_per_batch)))

    def _report_queue(self, depth: int) -> None:
        if self.on_queue is not None:
            self.on_queue(depth)

    # ---- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        trimmer = HeapTrimmer()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                if batch[0].fn is not None:
                    self._run_callable(batch[0])
                else:
                    self._run_batch(batch)
            finally:
                with self._cond:
                    self._running_since = None
                    if not self._pending:
                        self._idle.set()
            trimmer.maybe()

    def _next_batch(self) -> list[_Job] | None:
        """Wait for work; return the oldest job plus what can join it, or None once closed."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._pending.popleft()
            self._queued -= first.size
            self._running_since = time.monotonic()
            self._idle.clear()
            batch = [first]
            if first.fn is None and self.enabled:
                deadline = first.enqueued + self.max_wait
                if self._last_callers <= 1 and not self._pending:
                    # a lone caller last time and nobody waiting now: waiting only adds latency
                    # (one client paid 5 ms a request: 42 vs 52 texts/s without batching)
                    deadline = time.monotonic()
                size = len(first.texts)
                while size < self.max_batch_size:
                    size = self._gather(batch, size)
                    remaining = deadline - time.monotonic()
                    if size >= self.max_batch_size or remaining <= 0 or self._closing:
                        break
                    self._cond.wait(remaining)
            depth = self._queued
        self._report_queue(depth)
        return batch

    def _gather(self, batch: list[_Job], size: int) -> int:
        """Move queued jobs of the batch's key that still fit into `batch` (lock held).

        When they all fit, all join in arrival order. When more wait than fit (a loaded server),
        the ones whose texts are closest in length to the batch's first job join, so a batch
        holds texts of like length and its forward passes pad little (random Rotten Tomatoes
        texts, 32 a batch: padded tokens 1.96x the real ones; 64 waiting, closest 32: 1.54x).
        The oldest job always leads the next batch, so no job waits for more batches than there
        were jobs queued before it.
        """
        key = batch[0].key
        room = self.max_batch_size - size
        candidates = [j for j in self._pending if j.fn is None and j.key == key]
        if sum(len(j.texts) for j in candidates) > room:
            width = mean_chars(batch[0].texts)
            candidates.sort(key=lambda j: abs(mean_chars(j.texts) - width))  # stable: by age
        for job in candidates:
            if size >= self.max_batch_size:
                break
            if size + len(job.texts) > self.max_batch_size:
                continue
            self._pending.remove(job)
            self._queued -= job.size
            batch.append(job)
            size += len(job.texts)
        return size

    def _run_batch(self, batch: list[_Job]) -> None:
        self._last_callers = len(batch)
        texts = [t for job in batch for t in job.texts]
        start = time.perf_counter()
        try:
            results = list(self.predict_fn(texts, batch[0].key))
            if len(results) != len(texts):
                raise RuntimeError(f"predict_fn returned {len(results)} results for {len(texts)}")
        except Exception as e:  # every caller of this batch gets the error, and only they
            for job in batch:
                self._deliver(job, None, e)
            return
        finally:
            self._timed(time.perf_counter() - start, len(texts))
        offset = 0
        for job in batch:
            n = len(job.texts)
            self._deliver(job, results[offset : offset + n], None)
            offset += n

    def _run_callable(self, job: _Job) -> None:
        start = time.perf_counter()
        try:
            result = job.fn() if job.fn is not None else None
        except Exception as e:
            self._deliver(job, None, e)
            return
        finally:
            self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * (
                time.perf_counter() - start
            )
        self._deliver(job, result, None)

    def _timed(self, seconds: float, size: int) -> None:
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * seconds
        if self.on_batch is not None:
            self.on_batch(size, seconds)

    @staticmethod
    def _deliver(job: _Job, result: Any, error: BaseException | None) -> None:
        with suppress(RuntimeError):  # the caller's loop is closed: nobody waits any more
            job.loop.call_soon_threadsafe(resolve_future, job.future, result, error)


__all__ = ["BatcherClosed", "MicroBatcher", "QueueFull"]
