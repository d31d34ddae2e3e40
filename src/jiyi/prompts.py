"""The prompts of a model: the prefix each use of its embeddings gets.

An e5 model expects `query: ` before a question and `passage: ` before a text that answers one.
A model folder says so in `config_sentence_transformers.json` (the sentence-transformers
convention, so Hub models that declare prompts work too):

    {"prompts": {"query": "query: ", "passage": "passage: "}, ...}

jiyi's uses and their roles: memory rows and summarize sentences are passages; questions
(`jiyi ask`), memory queries (`jiyi memory query`, predict-time `--memory`) and `jiyi embed`
are queries (the e5 card's advice for features and symmetric tasks). A model without prompts
(MiniLM, a fine-tuned run: fine-tuning uses none) gets "" everywhere, so nothing changes for it.

>>> model_prompts("~/.cache/jiyi/models/me5-small-1571fc98")  # doctest: +SKIP
{'query': 'query: ', 'passage': 'passage: '}
>>> prompt_for("minilm-folder", "passage"), prompt_for("me5-folder", "query", override="")
('', '')
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from jiyi.errors import JiyiError

ROLES = ("query", "passage")
PROMPTS_FILE = "config_sentence_transformers.json"
ALIASES = {"document": "passage"}  # other names sentence-transformers models use for a role
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
# Hub snapshots of e5 models whose metadata may not list the prompts their model card asks for
# (`--model me5-small` uses one when it is in the Hugging Face cache).
KNOWN = {"models--intfloat--multilingual-e5-": E5_PROMPTS, "models--intfloat--e5-": E5_PROMPTS}


def model_prompts(folder: str | os.PathLike) -> dict[str, str]:
    """{role: prefix} from a model folder's metadata; {} for a model without prompts (or a Hub
    id, which is not a folder)."""
    path = Path(folder) / PROMPTS_FILE
    if not path.is_file():
        cached = Path(folder).expanduser().resolve()
        for repo, prompts in KNOWN.items():  # .../models--intfloat--e5-small/snapshots/<sha>
            if cached.parent.name == "snapshots" and cached.parent.parent.name.startswith(repo):
                return dict(prompts)
        return {}
    try:
        prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise JiyiError(f"{path}: not a valid JSON object ({e}).") from None
    out: dict[str, str] = {}
    for name, prefix in prompts.items():
        role = ALIASES.get(name, name)
        if role in ROLES and isinstance(prefix, str):
            out.setdefault(role, prefix)
    return out


def prompt_for(folder: str | os.PathLike, role: str, override: str | None = None) -> str:
    """The prefix for `role` ("query" or "passage"); `override` (a `--prompt` flag) wins, and
    "" turns prompts off."""
    if role not in ROLES:
        raise ValueError(f"prompt role {role!r} is not one of {ROLES}")
    if override is not None:
        return override
    return model_prompts(folder).get(role, "")


def with_prompt(texts: Sequence[str], prompt: str) -> list[str]:
    """["a", "b"], "query: " -> ["query: a", "query: b"]."""
    return [prompt + t for t in texts] if prompt else list(texts)
