"""Vocabulary trimming: keep the pieces a corpus uses, drop the rest of the embedding table.

multilingual-e5-small holds 250k pieces, 96M of its 118M parameters, and Chinese reviews use
~15k of them. Trimming keeps the special tokens and the pieces the full tokenizer produces on a
corpus, moves their embedding rows (and a tied MLM decoder and its bias) to new consecutive ids,
and rewrites the tokenizer so that on that corpus it segments exactly as the full one did:

    full:    "房间很好" -> [6, 67445, 4115, 1274]        (of 250,002 pieces)
    trimmed: "房间很好" -> [5, 3012, 801, 290]           (of 15,212; new_to_old[3012] == 67445)

Why the segmentation cannot change (without `keep`):
- Unigram (SentencePiece): Viterbi picks the best-scoring path of vocabulary pieces. Every piece
  of the full tokenizer's best path is kept with its score, and every trimmed path is also a full
  path, so the best path stays the best. A character with no single-character piece left gets an
  `<unk>` node scored `min(score) - 10`; the lowest-scoring piece of the full vocabulary is kept,
  so that score is unchanged and an `<unk>` node always scores below the piece it stands for.
- WordPiece: greedy longest match; each match of the full tokenizer is kept, and no longer match
  exists in a subset.
With `keep=N` only the N most frequent corpus pieces stay and the rare ones re-segment into
smaller kept pieces (or `<unk>`).

Kept ids stay in their original order (so XLM-R's `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 keep
their ids; `<mask>` becomes the last id). The output is a plain Hugging Face folder (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json) that `from_pretrained` loads without
jiyi, plus `trim_vocab.json`: the original sizes, the corpus, and `new_to_old` (new id i was
original id new_to_old[i]). config.json records `jiyi_trimmed_vocab` (sizes and corpus), which
survives fine-tuning, so `jiyi predict` can warn when a text is full of dropped pieces.

BPE tokenizers are refused: their merges would have to be trimmed consistently too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

RECORD = "trim_vocab.json"
CONFIG_KEY = "jiyi_trimmed_vocab"  # in config.json: {original_vocab_size, kept, corpus}
SUPPORTED = ("Unigram", "WordPiece", "WordLevel")
VOCAB_FILES = (  # slow-tokenizer files that would disagree with the trimmed tokenizer.json
    "sentencepiece.bpe.model",
    "spiece.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
SPECIAL_CONFIG_IDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "unk_token_id",
    "mask_token_id",
    "decoder_start_token_id",
)


# --- the corpus ------------------------------------------------------------------------------


def read_corpus(paths: Sequence[str | Path], text_column: str = "text", flag: str = "--corpus"):
    """Texts of corpus files: .txt one text per line, CSV/TSV/JSONL/Parquet its `text_column`."""
    from jiyi.data.readers import read_inputs

    if not paths:
        raise JiyiError(f"{flag}: give at least one file of texts.")
    texts: list[str] = []
    for path in paths:
        if not Path(path).exists():
            raise JiyiError(f"{flag} {path}: no such file.")
        try:
            examples = read_inputs(path, text_column=text_column)
        except JiyiError as e:
            raise JiyiError(f"{flag} {e}") from None
        texts += [e.text for e in examples]
        texts += [e.text_pair for e in examples if getattr(e, "text_pair", None)]
    if not texts:
        raise JiyiError(f"{flag} {', '.join(map(str, paths))}: no texts in the file(s).")
    return texts


# --- the tokenizer ---------------------------------------------------------------------------


def tokenizer_json(model_dir: Path) -> dict[str, Any]:
    """The folder's fast tokenizer as its JSON description (tokenizer.json, or built by
    transformers from a vocab.txt)."""
    file = model_dir / "tokenizer.json"
    if file.is_file():
        return json.loads(file.read_text(encoding="utf-8"))
    from transformers import AutoTokenizer

    from jiyi.hf import quiet_transformers

    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise JiyiError(f"{model_dir}: trim-vocab needs a fast (Rust) tokenizer; this one is slow.")
    return json.loads(tok.backend_tokenizer.to_str())


def backend(spec: dict[str, Any]) -> Any:
    """A `tokenizers.Tokenizer` from its JSON, with no truncation or padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(spec))
    tok.no_truncation()
    tok.no_padding()
    return tok


Text = str | Sequence[str]  # a text, or a sentence split into words (NER's pre-split input)


def corpus_ids(tok: Any, texts: Sequence[Text], batch: int = 4096) -> list[list[int]]:
    """Token ids of each text, without special tokens. A text given as a list of words is
    encoded pre-split (`is_split_into_words=True` in transformers): each word on its own, so a
    SentencePiece tokenizer gives every word its "▁" prefix, as NER's encoding does."""
    out: list[list[int] | None] = [None] * len(texts)
    plain = [i for i, t in enumerate(texts) if isinstance(t, str)]
    split = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    for rows, pretokenized in ((plain, False), (split, True)):
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            encoded = tok.encode_batch(
                [list(texts[i]) if pretokenized else texts[i] for i in chunk],
                add_special_tokens=False,
                is_pretokenized=pretokenized,
            )
            for i, e in zip(chunk, encoded, strict=True):
                out[i] = e.ids
    return out  # type: ignore[return-value]


def vocab_pieces(spec: dict[str, Any]) -> dict[str, int]:
    """piece -> id of the tokenizer's model (added tokens not included)."""
    model = spec["model"]
    if model["type"] == "Unigram":
        return {piece: i for i, (piece, _) in enumerate(model["vocab"])}
    return dict(model["vocab"])


def choose_ids(
    spec: dict[str, Any],
    counts: dict[int, int],
    *,
    keep: int | None = None,
    characters: Sequence[str] = (),
    also: Sequence[int] = (),
) -> tuple[list[int], dict[str, Any]]:
    """The original ids to keep, sorted, and how many came from where.

    Always: the added/special tokens, `also` (ids a config names), and for Unigram the
    lowest-scoring piece (it fixes the `<unk>` score). Then the corpus pieces, all of them or
    the `keep` most frequent (ties: lower id first), then the single-character pieces of
    `characters` (so unseen words of seen characters split into characters, not `<unk>`).
    """
    model = spec["model"]
    forced = {int(t["id"]) for t in spec.get("added_tokens", [])} | {int(i) for i in also}
    pieces = vocab_pieces(spec)
    if model["type"] == "Unigram":
        scores = [s for _, s in model["vocab"]]
        forced.add(min(range(len(scores)), key=lambda i: (scores[i], i)))
        if model.get("unk_id") is not None:
            forced.add(int(model["unk_id"]))
    elif model.get("unk_token") in pieces:
        forced.add(pieces[model["unk_token"]])
    ranked = sorted((i for i in counts if i not in forced), key=lambda i: (-counts[i], i))
    if keep is not None:
        ranked = ranked[:keep]
    chars: set[int] = set()
    prefixes = {
        "Unigram": ("", "\u2581"),
        "WordPiece": ("", model.get("continuing_subword_prefix", "##")),
    }
    for c in characters:
        for prefix in prefixes.get(model["type"], ("",)):
            if (i := pieces.get(prefix + c)) is not None:
                chars.add(i)
    kept = sorted(forced | set(ranked) | chars)
    how = {
        "special": len(forced),
        "corpus_pieces": len(ranked),
        "corpus_pieces_seen": len(counts),
        "character_pieces_added": len(chars - forced - set(ranked)),
    }
    return kept, how


def trim_spec(spec: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """The tokenizer JSON restricted to `kept` (sorted original ids), every id remapped."""
    model = dict(spec["model"])
    if model["type"] not in SUPPORTED:
        raise JiyiError(
            f"trim-vocab: the tokenizer is {model['type']}; jiyi trims {', '.join(SUPPORTED)} "
            "vocabularies (a BPE vocabulary would need its merges trimmed consistently)."
        )
    new_of = {old: new for new, old in enumerate(kept)}
    n_model = len(spec["model"]["vocab"])
    in_model = [old for old in kept if old < n_model]
    if in_model != kept[: len(in_model)]:
        raise AssertionError("added tokens must come after the model vocabulary")  # a bug
    if model["type"] == "Unigram":
        model["vocab"] = [spec["model"]["vocab"][old] for old in in_model]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_of[int(model["unk_id"])]
    else:
        piece_of = {i: p for p, i in model["vocab"].items()}
        model["vocab"] = {piece_of[old]: new_of[old] for old in in_model}
    out = {**spec, "model": model}
    out["added_tokens"] = [{**t, "id": new_of[int(t["id"])]} for t in spec.get("added_tokens", [])]
    out["post_processor"] = remap_ids(spec.get("post_processor"), new_of)
    out["padding"] = remap_ids(spec.get("padding"), new_of)
    return out


def remap_ids(node: Any, new_of: dict[int, int]) -> Any:
    """Ids inside a post-processor or padding description, remapped: TemplateProcessing's
    `special_tokens.*.ids`, Bert/RobertaProcessing's `sep`/`cls` = [token, id], `pad_id`."""
    if isinstance(node, list):
        return [remap_ids(x, new_of) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "ids" and isinstance(value, list):
            out[key] = [new_of[int(i)] for i in value]
        elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
            out[key] = [value[0], new_of[int(value[1])]]
        elif key == "pad_id" and isinstance(value, int):
            out[key] = new_of.get(value, value)
        else:
            out[key] = remap_ids(value, new_of)
    return out


def write_tokenizer(src: Path, dst: Path, spec: dict[str, Any], new_of: dict[int, int]) -> None:
    """tokenizer.json, tokenizer_config.json (added_tokens_decoder ids remapped), vocab.txt
    (WordPiece, when the source had one); the slow vocabulary files are not carried over."""
    from jiyi.io import atomic_write_json, atomic_write_text

    atomic_write_json(dst / "tokenizer.json", spec)
    for name in VOCAB_FILES:
        (dst / name).unlink(missing_ok=True)
    config_file = src / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if isinstance(config.get("added_tokens_decoder"), dict):
            config["added_tokens_decoder"] = {
                str(new_of[int(k)]): v
                for k, v in config["added_tokens_decoder"].items()
                if int(k) in new_of
            }
        atomic_write_json(dst / "tokenizer_config.json", config)
    if (src / "vocab.txt").is_file() and spec["model"]["type"] == "WordPiece":
        ordered = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
        atomic_write_text(dst / "vocab.txt", "".join(p + "\n" for p, _ in ordered))


# --- the model -------------------------------------------------------------------------------


def load_any(model_dir: Path) -> Any:
    """The folder's model with its own head (its config's `architectures`), else the encoder."""
    import transformers
    from transformers import AutoConfig, AutoModel

    from jiyi.hf import quiet_transformers
    from jiyi.lora import load_pretrained, unmerged_record

    if not any(model_dir.glob("*.safetensors")) and not unmerged_record(model_dir):
        raise JiyiError(f"{model_dir}: no .safetensors weights (jiyi never loads pickles).")
    if json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("jiyi_pruned_heads"):
        raise JiyiError(
            f"{model_dir}: its attention heads are pruned; trim the vocabulary first "
            "(--method trim-vocab,prune-heads)."
        )
    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    names = getattr(config, "architectures", None) or []
    cls = getattr(transformers, names[0], None) if names else None
    with quiet_transformers():
        return load_pretrained(  # an unmerged LoRA run: base + adapter, merged
            cls or AutoModel, model_dir, trust_remote_code=False, use_safetensors=True
        )


def trim_model(model: Any, kept: list[int]) -> dict[str, Any]:
    """Keep the rows `kept` of the input embeddings, and of the output embeddings and their bias
    (an MLM head), in place; the config's vocab_size and special ids follow. Returns the
    original row count."""
    import torch

    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    if max(kept) >= rows:
        raise JiyiError(
            f"trim-vocab: the tokenizer has id {max(kept)} but the model only {rows} embedding "
            "rows; the tokenizer does not belong to this model."
        )
    new_of = {old: new for new, old in enumerate(kept)}
    index = torch.tensor(kept, dtype=torch.long)
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    pad = emb.padding_idx
    new_emb = torch.nn.Embedding(
        len(kept), emb.weight.shape[1], padding_idx=new_of.get(pad) if pad is not None else None
    )
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight[index])
    model.set_input_embeddings(new_emb)
    if out is not None:
        new_out = torch.nn.Linear(out.in_features, len(kept), bias=out.bias is not None)
        with torch.no_grad():
            new_out.weight.copy_(out.weight[index])
            if out.bias is not None:
                new_out.bias.copy_(out.bias[index])
        if tied:
            new_out.weight = new_emb.weight
        model.set_output_embeddings(new_out)
        for module in model.modules():  # BERT's LM head keeps the bias beside the decoder too
            bias = getattr(module, "bias", None)
            if (
                module is not new_out
                and isinstance(bias, torch.nn.Parameter)
                and bias.shape == (rows,)
            ):
                module.bias = new_out.bias
    model.config.vocab_size = len(kept)
    for key in SPECIAL_CONFIG_IDS:
        value = getattr(model.config, key, None)
        if isinstance(value, int):
            setattr(model.config, key, new_of.get(value))
    for name, p in model.named_parameters():
        if p.shape and p.shape[0] == rows and rows != len(kept):
            raise JiyiError(
                f"trim-vocab: {type(model).__name__}.{name} has one row per vocabulary entry and "
                "jiyi does not know how to trim it; this architecture is not supported."
            )
    return {"original_vocab_size": rows, "tied_output": tied, "output_embeddings": out is not None}


# --- the whole operation ---------------------------------------------------------------------


def config_ids(model_dir: Path) -> list[int]:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return [config[k] for k in SPECIAL_CONFIG_IDS if isinstance(config.get(k), int)]


def trim_into(
    src: Path,
    dst: Path,
    texts: Sequence[Text],
    *,
    keep: int | None = None,
    characters: bool = False,
    corpus: Sequence[str] = (),
) -> dict[str, Any]:
    """Trim the model folder `src` to the pieces of `texts` (strings, or sentences as lists of
    words: see `corpus_ids`), writing into the existing folder
    `dst` (the caller makes it atomic). Returns the record also written to `dst/trim_vocab.json`
    (without `new_to_old`)."""
    from jiyi.compress.artifacts import copy_support_files
    from jiyi.hf import quiet_transformers
    from jiyi.io import atomic_write_json

    src = Path(src)
    if keep is not None and keep < 1:
        raise JiyiError(f"--keep must be at least 1, got {keep}.")
    if not texts:
        raise JiyiError("--corpus: no texts to trim the vocabulary to.")
    spec = tokenizer_json(src)
    if spec["model"]["type"] not in SUPPORTED:
        trim_spec(spec, [])  # raises the JiyiError naming the tokenizer type
    full = backend(spec)
    ids = corpus_ids(full, texts)
    counts: dict[int, int] = {}
    for row in ids:
        for i in row:
            counts[i] = counts.get(i, 0) + 1
    words = [w for t in texts for w in ([t] if isinstance(t, str) else t)]
    chars = sorted({c for w in words for c in normalized(full, w)}) if characters else []
    kept, how = choose_ids(spec, counts, keep=keep, characters=chars, also=config_ids(src))
    trimmed_spec = trim_spec(spec, kept)
    new_of = {old: new for new, old in enumerate(kept)}
    model = load_any(src)
    shapes = trim_model(model, kept)
    # the trimmed tokenizer on the corpus: the full one's ids, remapped (unless --keep dropped some)
    trimmed = backend(trimmed_spec)
    unk = trimmed_unk_id(trimmed_spec)
    mismatches = sum(
        [new_of.get(i, unk) for i in a] != b
        for a, b in zip(ids, corpus_ids(trimmed, texts), strict=True)
    )
    record = {
        "original_vocab_size": shapes["original_vocab_size"],
        "original_tokenizer_size": full.get_vocab_size(),
        "kept": len(kept),
        "keep": keep,
        "characters": characters,
        **how,
        "tokenizer_model": spec["model"]["type"],
        "corpus": [str(c) for c in corpus],
        "corpus_texts": len(texts),
        "corpus_tokens": sum(len(r) for r in ids),
        "corpus_texts_segmented_differently": int(mismatches),
        "tied_output_embeddings": shapes["tied_output"],
        "special_ids": {t["content"]: t["id"] for t in trimmed_spec.get("added_tokens", [])},
    }
    model.config.update(
        {CONFIG_KEY: {k: record[k] for k in ("original_vocab_size", "kept", "corpus")}}
    )
    copy_support_files(src, dst)
    (dst / RECORD).unlink(missing_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(dst), safe_serialization=True)
    write_tokenizer(src, dst, trimmed_spec, new_of)
    atomic_write_json(dst / RECORD, {**record, "new_to_old": kept})
    return record


def trim_vocab(
    model_dir: str | Path,
    texts: Sequence[Text],
    output: str | Path,
    *,
    keep: int | None = None,
    characters: bool = False,
    corpus: Sequence[str] = (),
) -> dict[str, Any]:
    """Trim a Hugging Face model folder (or a jiyi run) to the pieces of `texts`; write the
    trimmed folder to `output` whole or not at all. Returns the trimming record."""
    from jiyi import runs
    from jiyi.io import atomic_directory

    src = runs.model_dir(model_dir, flag="")
    with atomic_directory(output) as tmp:
        return trim_into(src, tmp, texts, keep=keep, characters=characters, corpus=corpus)


def trim_step(
    src: Path, dst: Path, meta: dict[str, Any], corpus: Sequence[str], keep: int | None
) -> dict[str, Any]:
    """`jiyi compress --method trim-vocab`: one step of the compress chain; `dst` is written
    whole (model, tokenizer, trim_vocab.json, jiyi.json with the chain) or not at all."""
    import time

    from jiyi.compress.artifacts import write_meta
    from jiyi.io import atomic_directory

    texts = read_corpus(corpus, text_column=meta.get("text_column") or "text")
    t0 = time.perf_counter()
    with atomic_directory(dst) as tmp:
        record = trim_into(src, tmp, texts, keep=keep, corpus=corpus)
        step = {"method": "trim-vocab", **record}
        meta_out = write_meta(tmp, meta, "torch", step, src)
    step["seconds"] = round(time.perf_counter() - t0, 1)
    step["format"] = meta_out["format"]
    return step


def is_classifier(model_dir: Path) -> bool:
    """A folder with a sequence-classification head (what the compress report measures)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def normalized(tok: Any, text: str) -> str:
    return tok.normalizer.normalize_str(text) if tok.normalizer is not None else text


def trimmed_unk_id(spec: dict[str, Any]) -> int | None:
    model = spec["model"]
    if model["type"] == "Unigram":
        return model.get("unk_id")
    return vocab_pieces(spec).get(model.get("unk_token"))


def segmentation_drift(full: Any, trimmed: Any, new_to_old: Sequence[int], texts: Sequence[str]):
    """How the trimmed tokenizer segments `texts` (e.g. held-out ones) against the full one.

    A full token is `changed` when the trimmed segmentation has no token with the same piece
    over the same characters. Both arguments are `tokenizers.Tokenizer`s (or transformers fast
    tokenizers; their backend is used)."""
    full = getattr(full, "backend_tokenizer", full)
    trimmed = getattr(trimmed, "backend_tokenizer", trimmed)
    unk_full = full.token_to_id(full_unk_token(full))
    unk_trim = trimmed.token_to_id(full_unk_token(trimmed))
    n = changed = texts_changed = unk_a = unk_b = n_trim = 0
    for a, b in zip(
        full.encode_batch(list(texts), add_special_tokens=False),
        trimmed.encode_batch(list(texts), add_special_tokens=False),
        strict=True,
    ):
        spans = {(off, new_to_old[i]) for off, i in zip(b.offsets, b.ids, strict=True)}
        lost = sum((off, i) not in spans for off, i in zip(a.offsets, a.ids, strict=True))
        n, n_trim, changed = n + len(a.ids), n_trim + len(b.ids), changed + lost
        texts_changed += lost > 0
        unk_a += sum(i == unk_full for i in a.ids)
        unk_b += sum(i == unk_trim for i in b.ids)
    return {
        "texts": len(texts),
        "texts_changed": texts_changed,
        "tokens_full": n,
        "tokens_trimmed": n_trim,
        "tokens_changed": changed,
        "changed_rate": changed / max(n, 1),
        "unk_full": unk_a,
        "unk_trimmed": unk_b,
        "unk_rate_trimmed": unk_b / max(n_trim, 1),
    }


def full_unk_token(tok: Any) -> str | None:
    model = json.loads(tok.to_str())["model"]
    if model["type"] == "Unigram":
        return model["vocab"][model["unk_id"]][0] if model.get("unk_id") is not None else None
    return model.get("unk_token")


__all__ = [
    "CONFIG_KEY",
    "RECORD",
    "is_classifier",
    "read_corpus",
    "segmentation_drift",
    "trim_step",
    "trim_vocab",
]
