"""Resumable training state, written atomically: RUN_DIR/checkpoints/step-000120/

model.safetensors    the weights (safetensors, never pickle); of a LoRA run only what trains,
                     the adapters and the head (`jiyi.lora.trainable_state`): the base is rebuilt
                     from --model on --resume
optimizer.pt         AdamW moments (tensors only; loaded with weights_only=True)
rng.safetensors      torch's CPU (and CUDA) generator states
state.json           step, epoch, data position, scheduler, best metric, patience, world size,
                     the LoRA settings of a LoRA run ("lora")

Only global rank 0 writes them (`Run.checkpoint`), so a shared RUN_DIR across nodes gets one copy.

While a run trains, the last --keep-checkpoints of them are kept (RUN_DIR/model already holds
the best weights, so the best step needs no checkpoint of its own). When it finishes, they go
unless --keep-final-checkpoint asks to keep them (`jiyi.loop.finish_checkpoints`): a finished run is model/, not
optimizer state.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json
from jiyi.lora import check_checkpoint, checkpoint_record, trainable_state
from jiyi.runs import RUN_FORMAT, checkpoint_dirs


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # next batch (of this process's share) to run in `epoch`
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    examples_seen: int = 0
    scheduler: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    train_seconds: float = 0.0  # optimisation time, summed over resumed sessions
    world_size: int = 0  # processes (all nodes) that trained it; 0 in checkpoints before this
    lora: dict[str, Any] | None = None  # a LoRA run's adapters: the checkpoint holds only them


def save_checkpoint(
    run_dir: Path, state: TrainState, model: Any, optimizer: Any, scheduler: Any, keep: int
) -> Path:
    state.scheduler = scheduler.state_dict()
    state.lora = checkpoint_record(model)
    path = run_dir / "checkpoints" / f"step-{state.step:06d}"
    with atomic_directory(path) as tmp:
        weights = (
            trainable_state(model)
            if state.lora
            else {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        )
        save_file(_untie(weights), str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, str(tmp / "rng.safetensors"))
        atomic_write_json(tmp / "state.json", asdict(state))
    prune_checkpoints(run_dir, keep)
    return path


def _untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): store each tensor as its own copy."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in weights.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    return checkpoint_dirs(run_dir)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the `keep` most recent checkpoints (`keep` 0: none, and no checkpoints/ folder)."""
    ckpts = list_checkpoints(run_dir)
    for p in ckpts[: max(0, len(ckpts) - keep)]:
        shutil.rmtree(p, ignore_errors=True)
    root = run_dir / RUN_FORMAT["checkpoints"]
    if keep == 0 and root.is_dir():
        shutil.rmtree(root, ignore_errors=True)


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> TrainState:
    state = TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))
    weights = load_file(str(path / "model.safetensors"))
    check_checkpoint(state.lora, model, set(weights), path)
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(state.scheduler)
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return state


def check_world_size(state: TrainState, world: int, checkpoint: Path) -> None:
    """Refuse to resume a checkpoint on another number of processes: its data position counts
    batches of each process's share and its schedule was sized for that many processes."""
    if state.world_size and state.world_size != world:
        raise JiyiError(
            f"--resume: {checkpoint} was written by a run on {state.world_size} processes (all "
            f"nodes together), this launch has {world}. Its data position and learning-rate "
            f"schedule only hold for {state.world_size}: relaunch with {state.world_size} "
            "processes in total (nodes x processes per node), or start a new run."
        )
