"""`jiyi serve` under load: micro-batching against one-request-one-forward, on loopback.

    python bench/bench_serve.py --run bench/results/runs/jiyi --output bench/results/serve
    python bench/bench_serve.py ... --soak 300        # also 5 minutes at 32 clients

For each mode (micro-batching on, then `--no-batching`) one server process is started; then
1, 8 and 64 clients (one connection each) send single-text POST /v1/predict requests over the
Rotten Tomatoes test texts: wrk (`apt install wrk`; `--seconds` per level, bench/wrk_predict.lua)
when present, else asyncio httpx clients (a fixed number of requests each, `--client python`;
in Python the load generator itself takes much of the 2 cores it shares with the server).
Reported: throughput (texts/s), p50/p99 latency, errors; and the offline anchor, `jiyi.load(run)
.predict(texts)` on the same texts in one process (warm, the median of 3 passes). The soak run
samples the server's resident memory (VmRSS) at its start and end. Writes OUTPUT/serve.json and
prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import read_json

CLIENTS = (1, 8, 64)
REQUESTS = {1: 150, 8: 60, 64: 16}  # per client: bounded in count (and so in time)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(
    run: str, port: int, batching: bool, threads: int, flags: list[str] = ()
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jiyi", "serve", run, "--port", str(port), "--threads",
           str(threads), "--max-queue", "4096", *flags]  # fmt: skip
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"`{shlex.join(cmd)}` exited:\n{proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not become ready in 120 s")


async def load(
    port: int, texts: list[str], clients: int, per_client: int, seconds: float | None = None
) -> dict[str, Any]:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/predict"
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def client(c: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            i, t_end = 0, (time.perf_counter() + seconds) if seconds else None
            while (t_end is None and i < per_client) or (
                t_end is not None and time.perf_counter() < t_end
            ):
                text = texts[(c * 7919 + i) % len(texts)]
                t0 = time.perf_counter()
                try:
                    r = await http.post(url, json={"texts": [text]})
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                    else:
                        latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "texts_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
    }


WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_predict.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def load_wrk(port: int, texts_file: Path, clients: int, seconds: float) -> dict[str, Any]:
    """The same load from wrk (C, epoll): the client costs the shared cores far less."""
    import re

    cmd = ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{seconds:g}s",
           "--latency", "--timeout", "30s", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"]  # fmt: skip
    env = {**os.environ, "JIYI_WRK_TEXTS": str(texts_file)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout

    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return round(float(m.group(1)) * _UNITS[m.group(2)], 1) if m else None

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = {}
    if non2xx:
        errors["non-2xx"] = int(non2xx.group(1))
    if sock and sum(map(int, sock.groups())):
        errors["socket"] = sum(map(int, sock.groups()))
    wall = float(re.search(r"requests in ([\d.]+)(ms|s|m)", out).group(1))
    unit = re.search(r"requests in [\d.]+(ms|s|m)", out).group(1)
    wall = wall / 1000 if unit == "ms" else wall * 60 if unit == "m" else wall
    ok = total - sum(errors.values())
    return {
        "clients": clients,
        "requests": total,
        "ok": ok,
        "errors": errors,
        "seconds": round(wall, 2),
        "texts_per_s": round(ok / wall, 1),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
    }


def http_stack() -> str:
    """What uvicorn runs on here (its `auto` choice): uvloop and httptools when installed."""
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    return f"{loop} + {'httptools' if find_spec('httptools') else 'h11'}"


def offline(
    run: str, texts: list[str], threads: int, batch: int = 32, repeats: int = 3
) -> dict[str, Any]:
    """`jiyi.load(run).predict` on all the texts at once (sorted by length, passes of 64: the
    anchor, the median of `repeats` timed passes after an untimed one), then on random batches
    of `batch` texts (what a loaded server gathers), each in one pass on real tokens only
    (`jiyi.unpadded`, the default) and, for comparison, sorted and padded in passes of 8 (the
    server's way before unpadding). Every figure is taken warm: a first pass over new batch
    shapes also pays for oneDNN building its kernels (one anchor pass measured cold spread
    301.7-409.9 texts/s over four runs in session 22)."""
    from contextlib import nullcontext

    import jiyi.predict
    from jiyi.predict import load as load_run

    clf = load_run(run, batch_size=64, threads=threads)
    clf.predict(texts)  # untimed: the kernels for these shapes
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf.predict(texts)
        passes.append(time.perf_counter() - t0)
    wall = statistics.median(passes)
    order = np.random.default_rng(0).permutation(len(texts))
    chunks = [[texts[i] for i in order[k : k + batch]] for k in range(0, len(texts), batch)]

    def chunked(passes: int) -> float:
        clf.batch_size = passes
        for chunk in chunks:  # untimed, as above
            clf.predict(chunk)
        t = time.perf_counter()
        for chunk in chunks:
            clf.predict(chunk)
        return round(len(texts) / (time.perf_counter() - t), 1)

    unpadded = chunked(batch)
    real = jiyi.predict.unpadding
    jiyi.predict.unpadding = nullcontext  # the encoder's own (padded) forward
    try:
        padded = chunked(8)
    finally:
        jiyi.predict.unpadding = real
    return {
        "texts": len(texts),
        "seconds": round(wall, 2),
        "texts_per_s": round(len(texts) / wall, 1),
        "passes_texts_per_s": [round(len(texts) / w, 1) for w in passes],
        "random_batch": batch,
        "random_unpadded_texts_per_s": unpadded if getattr(clf, "unpadded", False) else None,
        "random_padded_texts_per_s": padded,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="bench/results/runs/jiyi")
    p.add_argument("--data", default="bench/results/data/bench/test.csv")
    p.add_argument("--output", default="bench/results/serve")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--soak", type=float, default=0, help="seconds at 32 clients (0: skip)")
    p.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator: wrk (apt install wrk; default when present) or asyncio httpx",
    )
    p.add_argument("--seconds", type=float, default=15, help="wrk: seconds per client count")
    p.add_argument(
        "--serve-flags",
        default="",
        help="more `jiyi serve` flags for the batching server (one string; default: none)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the --no-batching server")
    args = p.parse_args(argv)
    with open(args.data, encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    results: dict[str, Any] = {
        "run": args.run,
        "threads": args.threads,
        "client": args.client,
        "serve_flags": args.serve_flags,
        "http_stack": http_stack(),
        "modes": {},
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    texts_file = out / "texts.jsonl"
    texts_file.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")

    def run_load(port: int, clients: int, seconds: float | None = None) -> dict[str, Any]:
        if args.client == "wrk":
            return load_wrk(port, texts_file, clients, seconds or args.seconds)
        per_client = 0 if seconds else REQUESTS[clients]
        return asyncio.run(load(port, texts, clients, per_client, seconds=seconds))

    results["offline"] = offline(args.run, texts, args.threads)
    print("offline", results["offline"], file=sys.stderr, flush=True)
    for batching in (True,) if args.no_baseline else (True, False):
        port = free_port()
        flags = shlex.split(args.serve_flags) if batching else []
        server = start_server(args.run, port, batching, args.threads, flags)
        rows = []
        try:
            asyncio.run(load(port, texts, 4, 5))  # warm-up
            for clients in CLIENTS:
                row = run_load(port, clients)
                print("batching" if batching else "no batching", row, file=sys.stderr, flush=True)
                rows.append(row)
            if batching and args.soak:
                before = rss_mb(server.pid)
                soak = run_load(port, 32, seconds=args.soak)
                soak |= {
                    "rss_mb_start": round(before, 1),
                    "rss_mb_end": round(rss_mb(server.pid), 1),
                }
                soak["rss_growth"] = round(soak["rss_mb_end"] / soak["rss_mb_start"] - 1, 4)
                results["soak"] = soak
                print("soak", soak, file=sys.stderr, flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        results["modes"]["batching" if batching else "no_batching"] = rows
    results["command"] = shlex.join([sys.executable, *sys.argv])
    (out / "serve.json").write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    on, off = r["modes"]["batching"], r["modes"].get("no_batching")
    offline = r["offline"]["texts_per_s"]
    head = "| clients | batching texts/s | of offline | p50 ms | p99 ms | errors |"
    if off:
        head += " no batching texts/s | p50 ms | p99 ms | errors | speed-up |"
    lines = [head, "|" + " ---: |" * head[1:].count("|")]
    for i, a in enumerate(on):
        line = (
            f"| {a['clients']} | {a['texts_per_s']} | {a['texts_per_s'] / offline:.0%} | "
            f"{a['p50_ms']} | {a['p99_ms']} | {sum(a['errors'].values())} |"
        )
        if off:
            b = off[i]
            line += (
                f" {b['texts_per_s']} | {b['p50_ms']} | {b['p99_ms']} | "
                f"{sum(b['errors'].values())} | {a['texts_per_s'] / b['texts_per_s']:.2f}× |"
            )
        lines.append(line)
    top = on[-1]["texts_per_s"] / offline
    each = r["offline"].get("passes_texts_per_s")
    passes = f" (the median of warm passes at {', '.join(map(str, each))})" if each else ""
    flags = f" Server flags: `{r['serve_flags']}`." if r.get("serve_flags") else ""
    if r.get("http_stack"):
        flags += f" uvicorn on {r['http_stack']}."
    lines += [
        "",
        f"Offline `jiyi.load(run).predict` on the same {r['offline']['texts']} texts: "
        f"{r['offline']['texts_per_s']} texts/s{passes}; the server at {on[-1]['clients']} "
        f"clients reaches {top:.0%} of it.{flags}",
    ]
    o = r["offline"]
    if o.get("random_padded_texts_per_s"):
        unpadded = o.get("random_unpadded_texts_per_s")
        padded = f"{o['random_padded_texts_per_s']} texts/s sorted and padded in passes of 8"
        line = f"Offline on the same texts in random batches of {o['random_batch']} (what a loaded "
        if unpadded:
            share = on[-1]["texts_per_s"] / unpadded
            line += (
                f"server gathers): {unpadded} texts/s in one unpadded pass each (the server's "
                f"way), {padded}; the server at {on[-1]['clients']} clients reaches {share:.0%} "
                "of the former."
            )
        else:
            line += f"server gathers): {padded}."
        lines.append(line)
    if "soak" in r:
        s = r["soak"]
        lines.append(
            f"Soak: {s['seconds']} s at 32 clients, {s['ok']} requests, errors {s['errors'] or 0}, "
            f"RSS {s['rss_mb_start']} → {s['rss_mb_end']} MB ({s['rss_growth']:+.1%})."
        )
    return "\n".join(lines)


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md, from FOLDER/serve.json ("" when absent)."""
    r = read_json(folder / "serve.json")
    if r is None:
        return ""
    return "\n".join(
        [
            "## Serving: `jiyi serve` under load (bench/bench_serve.py)\n",
            f"Single-text POST /v1/predict from {r.get('client', 'python')} clients on loopback "
            f"(one connection each); server and load generator share the machine's cores; server "
            f"threads {r['threads']}.\n",
            render(r),
            "",
            f"Command: `{r['command']}`\n",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
