"""The verb `jiyi serve`: load a run (any format, optionally with a memory) and serve it over HTTP.

Wired into `jiyi.cli.build_parser` with `add_parsers(verbs)`. The model is loaded, checked and
warmed up before the port is bound, so a bad run fails with a message (exit 2) and a client
that reaches the server finds it ready. SIGTERM or Ctrl-C stops accepting connections, lets
the requests in flight finish (up to --timeout-s plus a few seconds), then exits (by the
signal, as is conventional: status 143 after SIGTERM, 130 after Ctrl-C). Explanations in
flight are stopped at the signal (their callers get 503), so shutdown never waits for one.

    python -m jiyi.serve.cli RUN_DIR [flags]     # the same as `jiyi serve RUN_DIR [flags]`
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from jiyi.errors import JiyiError

TOKEN_ENV = "JIYI_TOKEN"
GRACE_S = 5  # beyond --timeout-s, how long a graceful shutdown waits for requests in flight

SERVE_EXAMPLES = """examples:
  jiyi serve runs/demo                                  # http://127.0.0.1:8000
  jiyi serve runs/demo --memory runs/demo-memory --port 9000
  jiyi serve runs/demo-int8                             # a compressed model (ONNX int8 etc.)
  jiyi serve runs/ner                                 # a NER run: entities, character offsets
  jiyi serve runs/qa                                  # a QA run: POST /v1/ask {question, context}
  JIYI_TOKEN=$(openssl rand -hex 16) jiyi serve runs/demo --host 0.0.0.0
  curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' \\
       -d '{"texts": ["a moving, funny film"]}'
"""


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse a non-loopback address without a token (or an explicit --insecure)."""
    if token is not None and not token.strip():
        raise JiyiError("--token is empty; give a secret, or no --token.")
    if is_loopback(host) or token or insecure:
        return
    raise JiyiError(
        f"--host {host}: not a loopback address, so anyone who can reach this machine could use "
        f"the server. Set a token (--token TOKEN or ${TOKEN_ENV}; clients send Authorization: "
        "Bearer TOKEN), or pass --insecure to serve without one."
    )


def allowed_hosts(host: str, extra: Sequence[str], token: str | None) -> list[str]:
    """The Host header names the server answers: the loopback names, --host itself, and each
    --allowed-host ("*": any). A wildcard --host (0.0.0.0, ::) with a token and no
    --allowed-host answers any name (the token guards it; a rebinding page cannot read it);
    without a token it adds this machine's host names.

    >>> allowed_hosts("127.0.0.1", [], None)
    ['localhost', '127.0.0.1', '::1']
    >>> allowed_hosts("0.0.0.0", [], "s3cret")
    ['*']
    """
    from jiyi.serve.settings import LOOPBACK_HOSTS

    names = list(LOOPBACK_HOSTS)
    wildcard = host.strip("[]") in ("0.0.0.0", "::", "")
    if wildcard and token and not extra:
        return ["*"]
    if wildcard:
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(host)
    for name in extra:
        if not name.strip() or any(c in name for c in "/ \t@"):
            raise JiyiError(
                f"--allowed-host {name!r}: give a host name or address, e.g. example.org."
            )
        names.append(name.strip())
    from jiyi.serve.middleware import host_name

    out: list[str] = []
    for name in names:
        shown = "*" if name == "*" else host_name(name)
        if shown and shown not in out:
            out.append(shown)
    return out


def check_limits(args: argparse.Namespace) -> None:
    positive = {
        "--max-batch-size": args.max_batch_size,
        "--forward-batch-size": 1 if args.forward_batch_size is None else args.forward_batch_size,
        "--forward-tokens": 1 if args.forward_tokens is None else args.forward_tokens,
        "--max-texts": args.max_texts,
        "--max-chars": args.max_chars,
        "--max-body-bytes": args.max_body_bytes,
        "--max-queue": args.max_queue,
        "--max-explain-cost": args.max_explain_cost,
    }
    for flag, value in positive.items():
        if value < 1:
            raise JiyiError(f"{flag} {value}: must be at least 1.")
    if args.max_wait_ms < 0:
        raise JiyiError(f"--max-wait-ms {args.max_wait_ms:g}: must be 0 or more.")
    if args.timeout_s <= 0:
        raise JiyiError(f"--timeout-s {args.timeout_s:g}: must be more than 0.")
    if not 0 <= args.port <= 65535:
        raise JiyiError(f"--port {args.port}: choose 0..65535 (0: any free port).")
    if args.threads is not None and args.threads < 1:
        raise JiyiError(f"--threads {args.threads}: must be at least 1.")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise JiyiError(f"--host {host}: cannot resolve it ({e.strerror}).") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise JiyiError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror}); choose another "
            "port (or --port 0 for any free one)."
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def make_server(app: Any, *, timeout_s: float, log_level: str = "info") -> Any:
    """A uvicorn server for `app` whose graceful shutdown waits for requests in flight, after
    stopping the explanations among them (`app.state.explainer`, when there is one)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            explainer = getattr(app.state, "explainer", None)
            if explainer is not None:
                explainer.cancel_all()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(timeout_s) + GRACE_S,
        server_header=False,
        proxy_headers=False,
    )
    return Server(config)


def settings_from(args: argparse.Namespace, token: str | None) -> Any:
    from jiyi.serve.settings import Settings

    return Settings(
        max_batch_size=args.max_batch_size,
        forward_batch_size=args.forward_batch_size,
        forward_tokens=args.forward_tokens,
        max_wait_ms=args.max_wait_ms,
        batching=not args.no_batching,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        max_explain_cost=args.max_explain_cost,
        token=token,
        cors_origins=list(args.cors_origin or []),
        allowed_hosts=allowed_hosts(args.host, args.allowed_host or [], token),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    check_bind(args.host, token, args.insecure)
    check_limits(args)
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise JiyiError(
            f"jiyi serve needs {e.name}, which is not installed: pip install 'jiyi[serve]'."
        ) from None
    from pathlib import Path

    from jiyi.serve.app import create_app
    from jiyi.serve.services import load_service, service_class

    settings = settings_from(args, token)
    service_class(args.run_dir, memory=bool(args.memory))  # refuse before loading anything
    print(f"loading {args.run_dir} ...", file=sys.stderr)
    service = load_service(
        args.run_dir,
        args.memory or None,
        threads=args.threads,
        name=Path(args.run_dir).resolve().name,
    )
    app = create_app(settings, service)
    sock = bind(args.host, args.port)
    shown = [service.describe()]
    if service.memory is not None:
        shown.append(f"memory {args.memory} ({len(service.memory)} rows)")
    batching = (
        f"batches of up to {settings.max_batch_size} texts within {settings.max_wait_ms:g} ms"
        if settings.batching
        else "no batching"
    )
    print(f"jiyi serve: {url_of(sock)}  {'; '.join(shown)}; {batching}", file=sys.stderr)
    hosts = settings.allowed_hosts
    print(
        "jiyi serve: answers any Host name (the token guards it)"
        if "*" in hosts
        else f"jiyi serve: answers Host {', '.join(hosts)} (more: --allowed-host NAME)",
        file=sys.stderr,
    )
    if token is None and not is_loopback(args.host):
        print(
            "jiyi serve: warning: --insecure: no token; anyone who can reach it can use it.",
            file=sys.stderr,
        )
    if token is not None and len(token) < 16:
        print(
            "jiyi serve: warning: the token is short; use 16+ random characters.", file=sys.stderr
        )
    server = make_server(app, timeout_s=settings.timeout_s)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise JiyiError("the server did not start; see the messages above.")
    return 0


def add_parsers(verbs: Any) -> None:
    """Add `serve` to the `jiyi` sub-parsers."""
    p = verbs.add_parser(
        "serve",
        help="serve a model over HTTP (JSON API, web page, metrics)",
        description="Serve RUN_DIR (a run or model folder, compressed ones included) over HTTP: "
        "predictions micro-batched across concurrent requests, explanations, embeddings, and a "
        "memory (--memory) for kNN-augmented predictions, queries and FAQ answers. A NER run "
        "(jiyi train --task ner) serves its entities and embeddings (no explanations, no "
        "memory); a QA run (jiyi train --task qa) answers questions about a context at "
        "/v1/ask. Binds 127.0.0.1 unless --host says otherwise, and then only with a token (or "
        "--insecure).",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_serve)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a jiyi run directory or model folder")
    p.add_argument(
        "--memory",
        metavar="MEM_DIR",
        help="a memory (`jiyi memory build`) to serve (classification runs)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--token",
        help=f"require Authorization: Bearer TOKEN on /v1/* and /metrics (default: ${TOKEN_ENV}; "
        "prefer the variable: a flag shows in the process list)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token",
    )
    g = p.add_argument_group("batching")
    g.add_argument(
        "--max-batch-size", type=int, default=32, help="texts gathered into one batch (32)"
    )
    g.add_argument(
        "--forward-batch-size",
        type=int,
        default=None,
        help="a batch is sorted by length and run in forward passes of this many texts (default: "
        "the whole batch in one pass where the model runs on real tokens only, as BERT-shaped "
        "classifiers do; else 8, so short texts are not padded to the longest)",
    )
    g.add_argument(
        "--forward-tokens",
        type=int,
        default=None,
        metavar="N",
        help="also cut a forward pass before it holds N padded tokens (texts × its longest), so "
        "short texts run in wide passes and long ones in narrow ones (classification runs)",
    )
    g.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first request of a batch waits for others (default 5)",
    )
    g.add_argument(
        "--no-batching", action="store_true", help="one forward pass per request (a baseline)"
    )
    g.add_argument("--threads", type=int, help="torch / ONNX Runtime threads (default: all)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64)")
    g.add_argument(
        "--max-chars", type=int, default=10_000, help="characters per text (default 10000)"
    )
    g.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="request body size (default 1 MB)"
    )
    g.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="texts waiting for the model before requests get 429 (default 256)",
    )
    g.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="per-request timeout, 504; a timed-out explanation is stopped (default 30)",
    )
    g.add_argument(
        "--max-explain-cost",
        type=int,
        default=16_384,
        metavar="TOKEN_STEPS",
        help="tokens x integrated-gradients steps of one /v1/explain: a long text gets fewer "
        "steps, one too long even for 8 steps gets 422 (default 16384: ~10 s on MiniLM, 2 "
        "cores)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="answer requests whose Host header is NAME (repeatable; '*': any). Default: the "
        "loopback names and --host; other names get 400 (no DNS rebinding)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (repeatable; default: CORS off)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jiyi.serve.cli RUN_DIR [flags]`: `jiyi serve` on its own."""
    parser = argparse.ArgumentParser(prog="jiyi serve", epilog=SERVE_EXAMPLES)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except JiyiError as e:
        print(f"jiyi serve: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
