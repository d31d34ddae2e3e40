"""Live `jiyi serve` servers for the tests: real uvicorn servers in background threads, each on a
free 127.0.0.1 port, around the tiny trained run (plain, with a memory, with a token)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import CHROMIUM

from jiyi.cli import main as run_cli
from jiyi.serve.app import create_app
from jiyi.serve.classification import ClassificationService
from jiyi.serve.service import Service
from jiyi.serve.settings import Settings

TOKEN = "test-token-0123456789abcdef"


def pytest_configure(config: pytest.Config) -> None:
    """Give the module name `conftest` back to tests/conftest.py. pytest imports this file under
    that name too (the test folders are not packages), and the test modules collected after it
    do `from conftest import make_texts`, which must find the shared helpers, not these."""
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", None) or "/").resolve() == root:
            sys.modules["conftest"] = plugin


class LiveServer:
    """A uvicorn server for `app` on a free loopback port, run in a daemon thread."""

    def __init__(self, app: Any, *, graceful_s: int = 10):
        import uvicorn

        self.app = app
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=graceful_s
        )
        self.server = uvicorn.Server(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def metrics(self) -> Any:
        return self.app.state.metrics

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


class SlowClassifier:
    """A classifier whose `predict` sleeps first (for queue, timeout and drain tests)."""

    def __init__(self, classifier: Any, delay: float):
        self._classifier = classifier
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._classifier, name)

    def predict(self, texts: list[str], pairs: Any = None) -> list[dict]:
        time.sleep(self.delay)
        return self._classifier.predict(texts, pairs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium through playwright (the page tests); skips without either."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    if not CHROMIUM.exists():
        pytest.skip("needs chromium at /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="session")
def slow() -> Callable[[Any, float], SlowClassifier]:
    """slow(classifier, seconds): the classifier, sleeping before each prediction."""
    return SlowClassifier


@pytest.fixture(scope="session")
def classifier(trained_run: Path) -> Any:
    """The tiny run, loaded once (each server's worker thread is the only one using it)."""
    from jiyi.predict import load

    return load(trained_run)


@pytest.fixture(scope="session")
def memory_template(
    trained_run: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A memory of the tiny train set (labels and an `answer` payload), tuned on validation;
    servers get copies, as /v1/memory/add writes to it."""
    import csv

    rows = list(csv.DictReader((tiny_data_dir / "train.csv").open(encoding="utf-8")))[:120]
    data = tmp_path_factory.mktemp("mem-data") / "rows.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "answer"])
        w.writerows([r["text"], r["label"], f"answer {i}"] for i, r in enumerate(rows))
    out = tmp_path_factory.mktemp("mem") / "mem"
    argv = ["memory", "build", str(trained_run), "--data", str(data), "--payload", "answer",
            "--validation", str(tiny_data_dir / "validation.csv"), "--output", str(out),
            "--max-length", "32"]  # fmt: skip
    assert run_cli(argv) == 0
    return out


@pytest.fixture(scope="session")
def memory_copy(
    memory_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], Path]:
    def copy() -> Path:
        return Path(shutil.copytree(memory_template, tmp_path_factory.mktemp("mem-copy") / "m"))

    return copy


@contextlib.contextmanager
def _served(argv: list[str]) -> Iterator[tuple[subprocess.Popen, str, list[str]]]:
    """`jiyi serve` as its own process (argv after the interpreter, with --port 0): waits for
    the line that gives its URL; yields (process, url, stderr lines so far); kills it at exit."""
    env = {k: v for k, v in os.environ.items() if k != "JIYI_TOKEN"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *argv], stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    log: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "".join(log)
                continue
            log.append(line)
            found = re.search(r"jiyi serve: (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "".join(log)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        time.sleep(0.1)  # the reader thread's last lines: `log` is the whole stderr afterwards
        while not lines.empty():
            log.append(lines.get())


@pytest.fixture(scope="session")
def serve_process() -> Callable[[list[str]], contextlib.AbstractContextManager]:
    """serve_process(argv): a context manager running `python ARGV` (a `jiyi serve` command line)
    until its URL is printed; yields (process, url, log) and kills the process afterwards."""
    return _served


@pytest.fixture(scope="session")
def start_server() -> Iterator[Callable[..., LiveServer]]:
    """start_server(settings, service) -> a started LiveServer, stopped at the end of the
    session (or earlier by the test)."""
    started: list[LiveServer] = []

    def start(settings: Settings, service: Service, **kw: Any) -> LiveServer:
        server = LiveServer(create_app(settings, service), **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture(scope="session")
def server(start_server: Callable[..., LiveServer], classifier: Any) -> LiveServer:
    """The tiny run, no memory, no token; 20 ms to gather a batch."""
    return start_server(Settings(max_wait_ms=20), ClassificationService(classifier))


@pytest.fixture(scope="session")
def mem_server(
    start_server: Callable[..., LiveServer], classifier: Any, memory_copy: Callable[[], Path]
) -> LiveServer:
    """The tiny run with a labelled memory whose rows carry an answer (predict is kNN-augmented,
    /v1/ask answers)."""
    from jiyi.memory.knn import Memory

    return start_server(Settings(), ClassificationService(classifier, Memory.open(memory_copy())))


@pytest.fixture(scope="session")
def token_server(start_server: Callable[..., LiveServer], classifier: Any) -> LiveServer:
    return start_server(Settings(token=TOKEN), ClassificationService(classifier))
