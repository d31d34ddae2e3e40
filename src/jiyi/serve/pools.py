"""One lasting OpenMP thread pool in a server process: the prediction batcher's.

PyTorch's CPU kernels run on OpenMP, and OpenMP (libgomp) keeps a pool of helper threads for
every thread that has run a parallel kernel, for as long as that thread lives. A second living
pool slowed the first one's forward passes by a quarter. Measured on the 2-core machine
(MiniLM, random batches of 32 Rotten Tomatoes texts in passes of 8, predicted on a worker
thread): 266-271 texts/s when no other thread had run the model or the one that had was gone,
187-209 when the main thread had run one warm-up prediction before (bench/RESULTS.md,
"Serving"). The likely cause: with more pool threads than cores libgomp stops spinning between
kernels and sleeps, and a forward pass, hundreds of small kernels, pays a wake-up for each.

So model work outside the batcher's worker runs on a passing thread, whose pool goes with it:
the loading and warm-up of a service (`jiyi.serve.services.load_service`) and each explanation
(`jiyi.serve.explainer`). The event loop's thread never runs the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_passing_thread(fn: Callable[[], T], name: str = "jiyi-passing") -> T:
    """`fn()` run on a new thread that ends with it: its result, or its exception raised here.

    >>> on_passing_thread(lambda: 6 * 7)
    42
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as e:  # re-raised on the caller's thread, as fn() would
            outcome["error"] = e

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]
