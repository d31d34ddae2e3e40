"""A server one request can't stall: explanations on their own worker (bounded by cost,
stopped when they time out, yielding to predictions), /readyz saying why the batcher is
saturated, the Host allow-list and the Content-Security-Policy. Real uvicorn servers around the
tiny run (conftest.py); an explanation is made slow by a test hook that burns CPU in every
encoder layer of the explaining copy of the model."""

from __future__ import annotations

import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import error_of

from jiyi.serve import cli as serve_cli
from jiyi.serve.classification import ClassificationService, ExplainingClassifier
from jiyi.serve.explainer import MIN_STEPS, ExplainTooCostly, plan_steps
from jiyi.serve.middleware import API_CSP, PAGE_CSP, host_name
from jiyi.serve.settings import STATIC_DIR, Settings

LONG = " ".join(["a moving and funny film with a dull ending"] * 12)  # ~100 words


def burn(seconds: float) -> None:
    """Busy CPU work (torch, like a real forward pass) for `seconds`."""
    import torch

    a = torch.ones(64, 64)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = (a @ a).clamp_(max=1.0)


class SlowExplainService(ClassificationService):
    """Explanations of texts starting with "slow" burn `per_layer` s of CPU in every encoder
    layer of the explaining model (a test hook: the production code does not sleep or spin)."""

    per_layer = 0.02
    slow = False

    def explain(self, text: str, steps: int) -> dict[str, Any]:
        if self._explaining is None:
            self._explaining = ExplainingClassifier(self.clf)
            for layer in self._explaining.model.base_model.encoder.layer:
                layer.register_forward_pre_hook(self.maybe_burn)
        self.slow = text.startswith("slow")
        return super().explain(text, steps)

    def maybe_burn(self, module: Any, args: Any) -> None:
        if self.slow:
            burn(self.per_layer)


def timed_predicts(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(n):
            start = time.perf_counter()
            r = c.post("/v1/predict", json={"texts": [f"a film number {i}"]})
            out.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    return out


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# ---- explanations never stall predictions, and a timeout stops them --------------------------


def test_predictions_keep_their_latency_while_a_long_explanation_runs_and_a_timeout_stops_it(
    start_server: Any, classifier: Any
) -> None:
    settings = Settings(timeout_s=4.0, max_explain_cost=10**9)
    server = start_server(settings, SlowExplainService(classifier))
    explainer = server.app.state.explainer
    timed_predicts(server.url, 3)  # warm up
    before = timed_predicts(server.url, 20)

    result: dict[str, Any] = {}

    def explain() -> None:
        body = {"text": "slow " + LONG, "steps": 200}
        start = time.perf_counter()
        result["r"] = httpx.post(f"{server.url}/v1/explain", json=body, timeout=30)
        result["s"] = time.perf_counter() - start

    caller = threading.Thread(target=explain)
    caller.start()
    wait_for(lambda: explainer.busy_s > 0.2)
    during = timed_predicts(server.url, 20)
    assert explainer.busy_s > 0  # the explanation was running all along
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    caller.join(30)

    # predictions answered at their own latency, not behind the explanation
    base, busy = statistics.median(before), statistics.median(during)
    assert busy < max(3 * base, base + 0.05), (before, during)
    assert max(during) < 1.0, during
    # the explanation ran into --timeout-s: 504, and the work stopped (the worker is free)
    e = error_of(result["r"], 504)
    assert "--timeout-s 4" in e["message"] and "stopped" in e["message"]
    assert result["s"] < 6
    wait_for(lambda: explainer.busy_s == 0, timeout=1.0)
    assert explainer.cancelled == 1
    start = time.perf_counter()
    r = httpx.post(f"{server.url}/v1/explain", json={"text": "a moving film", "steps": 4})
    assert r.status_code == 200 and time.perf_counter() - start < 3, r.text
    assert r.json()["steps"] == r.json()["steps_requested"] == 4
    server.stop()


def test_a_cancelled_explanation_frees_the_worker_and_shutdown_does_not_wait(
    start_server: Any, classifier: Any
) -> None:
    settings = Settings(timeout_s=60, max_explain_cost=10**9, explain_queue=1)
    server = start_server(settings, SlowExplainService(classifier))
    explainer = server.app.state.explainer
    result: dict[str, Any] = {}

    def explain(key: str) -> None:
        body = {"text": "slow " + LONG, "steps": 200}
        result[key] = httpx.post(f"{server.url}/v1/explain", json=body, timeout=30)

    first = threading.Thread(target=explain, args=("first",))
    first.start()
    wait_for(lambda: explainer.busy_s > 0.1)
    second = threading.Thread(target=explain, args=("second",))
    second.start()
    wait_for(lambda: explainer.waiting == 1)
    # one running, one waiting: a third is refused at once
    e = error_of(httpx.post(f"{server.url}/v1/explain", json={"text": "a film"}), 429)
    assert "explanation queue is full" in e["message"]

    start = time.perf_counter()
    explainer.cancel_all()  # what SIGTERM does first (cli.make_server), then the server drains
    first.join(10)
    second.join(10)
    assert time.perf_counter() - start < 2
    for key in ("first", "second"):
        assert "stopping" in error_of(result[key], 503)["message"]
    wait_for(lambda: explainer.busy_s == 0, timeout=1.0)
    assert httpx.post(f"{server.url}/v1/predict", json={"texts": ["a"]}).status_code == 200
    error_of(httpx.post(f"{server.url}/v1/explain", json={"text": "a film"}), 503)
    server.stop()


def test_explanations_are_bounded_by_tokens_times_steps(start_server: Any, classifier: Any) -> None:
    assert plan_steps(100, 32, 16_384) == 32
    assert plan_steps(1000, 32, 16_384) == 16
    assert plan_steps(100, 4, 400) == 4  # fewer than MIN_STEPS asked: that many, if they fit
    assert plan_steps(100, 64, 100 * MIN_STEPS) == MIN_STEPS
    with pytest.raises(ExplainTooCostly):
        plan_steps(100, MIN_STEPS, 100 * MIN_STEPS - 1)
    with pytest.raises(ExplainTooCostly, match="--max-explain-cost 16384"):
        plan_steps(4000, 32, 16_384)

    server = start_server(Settings(max_explain_cost=400), ClassificationService(classifier))
    with server.client() as c:
        short = c.post("/v1/explain", json={"text": "a moving film", "steps": 32}).json()
        n = len(short["tokens"])
        assert short["steps"] == min(32, 400 // n) and short["steps_requested"] == 32
        e = error_of(c.post("/v1/explain", json={"text": LONG, "steps": 32}), 422)
        assert e["code"] == "explain_too_costly" and "--max-explain-cost 400" in e["message"]
        # predictions are not limited by it
        assert c.post("/v1/predict", json={"texts": [LONG]}).status_code == 200
    server.stop()


# ---- /readyz says why the batcher cannot keep up ------------------------------------------------


def test_readyz_reports_a_full_queue_and_a_stalled_batch(
    start_server: Any, classifier: Any, slow: Any
) -> None:
    def post(url: str, texts: list[str]) -> threading.Thread:
        kwargs = {"json": {"texts": texts}, "timeout": 30}
        call = threading.Thread(target=httpx.post, args=(f"{url}/v1/predict",), kwargs=kwargs)
        call.start()
        return call

    settings = Settings(max_queue=2, batching=False, max_wait_ms=0)
    server = start_server(settings, ClassificationService(slow(classifier, 1.0)))
    calls = [post(server.url, ["a"])]
    wait_for(lambda: server.app.state.batcher.busy_s > 0)  # the worker holds "a"
    calls.append(post(server.url, ["b", "c"]))
    wait_for(lambda: server.app.state.batcher.queued == 2)
    e = error_of(httpx.get(f"{server.url}/readyz"), 503)
    assert e["code"] == "saturated" and "queue is full" in e["message"]
    assert "--max-queue 2" in e["message"]
    for call in calls:
        call.join(10)
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    server.stop()

    settings = Settings(timeout_s=0.3)
    server = start_server(settings, ClassificationService(slow(classifier, 1.5)))
    call = post(server.url, ["a"])
    wait_for(lambda: server.app.state.batcher.busy_s > 0.5)  # past --timeout-s 0.3
    e = error_of(httpx.get(f"{server.url}/readyz"), 503)
    assert e["code"] == "saturated" and "one batch" in e["message"]
    call.join(10)
    wait_for(lambda: server.app.state.batcher.busy_s == 0)
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    server.stop()


# ---- Host allow-list and Content-Security-Policy -----------------------------------------------


def test_a_foreign_host_header_gets_400_on_a_tokenless_server(server: Any) -> None:
    for path in ("/", "/healthz", "/v1/info"):
        r = httpx.get(f"{server.url}{path}", headers={"Host": "attacker.example"})
        e = error_of(r, 400)
        assert e["code"] == "bad_host" and "--allowed-host" in e["message"]
    r = httpx.post(
        f"{server.url}/v1/memory/add",
        json={"texts": ["x"]},
        headers={"Host": "attacker.example:8000"},
    )
    error_of(r, 400)
    port = server.url.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", "127.0.0.1", "[::1]:80", "LOCALHOST."):
        assert httpx.get(f"{server.url}/healthz", headers={"Host": host}).status_code == 200


def test_allowed_hosts_from_the_flags(start_server: Any, classifier: Any) -> None:
    assert host_name("Example.ORG:443") == "example.org" and host_name("[::1]") == "::1"
    assert serve_cli.allowed_hosts("127.0.0.1", [], None) == ["localhost", "127.0.0.1", "::1"]
    assert serve_cli.allowed_hosts("127.0.0.2", ["jiyi.lan"], None)[-2:] == [
        "127.0.0.2",
        "jiyi.lan",
    ]
    assert serve_cli.allowed_hosts("0.0.0.0", [], "a-token") == ["*"]
    wild = serve_cli.allowed_hosts("0.0.0.0", ["box.lan"], None)
    assert "*" not in wild and "box.lan" in wild and "localhost" in wild
    with pytest.raises(serve_cli.JiyiError, match="--allowed-host"):
        serve_cli.allowed_hosts("127.0.0.1", ["http://x/"], None)
    settings = Settings(allowed_hosts=[*Settings().allowed_hosts, "jiyi.lan"])
    server = start_server(settings, ClassificationService(classifier))
    assert httpx.get(f"{server.url}/healthz", headers={"Host": "jiyi.lan:80"}).status_code == 200
    error_of(httpx.get(f"{server.url}/healthz", headers={"Host": "attacker.example"}), 400)
    server.stop()


def test_content_security_policy(server: Any) -> None:
    page = httpx.get(f"{server.url}/")
    csp = page.headers["content-security-policy"]
    assert csp == PAGE_CSP and "script-src 'self'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    # the page needs no inline script or style, so none is allowed
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"\son\w+=|\sstyle=", html)
    for path in ("/v1/info", "/healthz", "/no/such/thing"):
        assert httpx.get(f"{server.url}{path}").headers["content-security-policy"] == API_CSP


def test_cli_allowed_host_flag_and_sigterm_stops_an_explanation(
    trained_run: Path, serve_process: Any
) -> None:
    import signal

    script = (
        "import sys, time\n"
        "import jiyi.serve.classification as c\n"
        "init = c.ExplainingClassifier.__init__\n"
        "def slow(self, clf):\n"
        "    init(self, clf)\n"
        "    for layer in self.model.base_model.encoder.layer:\n"
        "        layer.register_forward_pre_hook(lambda m, a: time.sleep(0.05))\n"
        "c.ExplainingClassifier.__init__ = slow\n"
        "from jiyi.serve.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )  # a test hook: each layer of the explaining model waits 50 ms
    argv = ["-c", script, str(trained_run), "--port", "0", "--allowed-host", "jiyi.lan",
            "--max-explain-cost", "1000000"]  # fmt: skip
    with serve_process(argv) as (proc, url, log):
        assert httpx.get(f"{url}/healthz", headers={"Host": "jiyi.lan"}).status_code == 200
        error_of(httpx.get(f"{url}/healthz", headers={"Host": "attacker.example"}), 400)
        result: dict[str, Any] = {}

        def call() -> None:
            body = {"text": LONG, "steps": 200}
            result["r"] = httpx.post(f"{url}/v1/explain", json=body, timeout=60)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)  # the explanation is running (minutes of 50 ms waits)
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        caller.join(20)
        assert proc.wait(20) in (0, -signal.SIGTERM)
        assert time.perf_counter() - start < 5
        assert "stopping" in error_of(result["r"], 503)["message"]
    assert any("answers Host" in line and "jiyi.lan" in line for line in log), "".join(log)
    assert "Traceback" not in "".join(log), "".join(log)
