"""Two "nodes" on one machine: two `torchrun --nnodes 2 --nproc-per-node 1` launches of
`jiyi train` that meet at a local c10d rendezvous (gloo), writing to one shared RUN_DIR.

Checked: one set of files (global rank 0 writes, not each node's local rank 0), the same final
weights as one node running two processes with the same seed, and a resume on another world
size refused with a message that names both sizes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-m", "jiyi", "train", "--model", str(model),
        "--train", str(data / "train.csv"), "--validation", str(data / "validation.csv"),
        "--output", str(out), "--epochs", "2", "--batch-size", "8", "--lr", "3e-3",
        "--max-length", "32", "--seed", "0", *extra,
    ]  # fmt: skip


def _node(rank: int, port: int) -> list[str]:
    """torchrun flags of node `rank` of two, one process each, meeting at 127.0.0.1:port."""
    return [
        "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", "jiyi-test", "--max-restarts", "0",
    ]  # fmt: skip


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _weights(run: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def test_two_nodes_match_one_node(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "two-nodes"
    port, keep = _free_port(), "--keep-final-checkpoint"
    nodes = [
        subprocess.Popen(
            _torchrun(
                *_node(rank, port), *_train_args(tiny_model_dir, tiny_data_dir, shared, keep)
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    events = [json.loads(x) for x in (shared / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in events) == 1, "only global rank 0 writes"
    assert events[0]["world_size"] == 2
    ckpts = sorted((shared / "checkpoints").iterdir())
    # 240 rows / (8 per process x 2 processes) = 15 steps per epoch, one checkpoint per epoch
    assert [p.name for p in ckpts] == ["step-000015", "step-000030"]
    assert json.loads((ckpts[-1] / "state.json").read_text())["world_size"] == 2

    one_node = tmp_path / "one-node"
    r = subprocess.run(
        _torchrun(
            *("--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())),
            *_train_args(tiny_model_dir, tiny_data_dir, one_node),
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    two, one = _weights(shared), _weights(one_node)
    assert two.keys() == one.keys()
    for name in one:  # same ranks, same batches, same all-reduce: equal up to float rounding
        diff = abs(two[name].astype("float64") - one[name].astype("float64")).max()
        assert diff <= 1e-6, (name, diff)

    # a resume on one process of the checkpoint two processes wrote is refused, nothing changed
    before = (shared / "metrics.jsonl").read_text()
    r = subprocess.run(
        [
            sys.executable,
            *_train_args(tiny_model_dir, tiny_data_dir, shared, "--resume", "--epochs", "3"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    assert "2 processes" in r.stderr and "this launch has 1" in r.stderr
    assert "Traceback" not in r.stderr
    assert (shared / "metrics.jsonl").read_text() == before
