"""`jiyi env`: what a bug report needs (versions, device, threads, memory allocator, offline state)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "datasets",
    "safetensors",
    "scikit-learn",
    "numpy",
    "captum",
    "faiss-cpu",
    "onnxruntime",
    "fastapi",
)


def environment_report() -> dict[str, Any]:
    import torch

    from jiyi import __version__
    from jiyi.allocator import allocator_report
    from jiyi.me5.convert import TOKENIZER, WEIGHTS
    from jiyi.models import ME5_ALIASES, MODEL_ALIASES, is_offline
    from jiyi.precision import device_has_bf16

    versions = {}
    for name in (*PACKAGES, *(p[0] for p in (WEIGHTS, TOKENIZER))):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    cuda = torch.cuda.is_available()
    return {
        "jiyi": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else "not available",
        "bf16": device_has_bf16("cuda" if cuda else "cpu"),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": allocator_report(),
        "HF_HUB_OFFLINE": is_offline(),
        "models": {
            **{
                alias: importlib.util.find_spec(pkg) is not None
                for alias, (pkg, _, _) in MODEL_ALIASES.items()
            },
            # me5-small offline needs both data packages (weights, tokenizer)
            ME5_ALIASES[0]: all(
                importlib.util.find_spec(p[1]) is not None for p in (WEIGHTS, TOKENIZER)
            ),
        },
        "cache": os.environ.get("JIYI_CACHE", os.path.expanduser("~/.cache/jiyi")),
    }
