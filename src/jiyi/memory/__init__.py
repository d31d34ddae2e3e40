"""A non-parametric kNN memory: `Memory` (build, open, add, forget, query), kNN-augmented and
memory-only prediction (`jiyi.memory.predict`), FAQ answering (`jiyi.memory.faq`)."""

from typing import Any

__all__ = ["Memory"]


def __getattr__(name: str) -> Any:  # `jiyi --help` imports jiyi.memory.cli: keep numpy out of it
    if name == "Memory":
        from jiyi.memory.knn import Memory

        return Memory
    raise AttributeError(name)
