"""A model card in the Hugging Face format: YAML front matter (with `model-index`), then prose,
every number taken from `CardFacts`.

>>> card = render(gather("runs/demo"))          # doctest: +SKIP
>>> card.splitlines()[0]                      # doctest: +SKIP
'---'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jiyi.card.facts import STATE_MARK, CardFacts, eval_digest, scalars
from jiyi.card.provenance import base_provenance, scripts_seen
from jiyi.card.results import (
    bias_section,
    calibration_section,
    compression_section,
    results_section,
)
from jiyi.card.training import (
    data_section,
    hyperparameter_section,
    limitations_section,
    provenance_section,
    reproduce_section,
)


def render(facts: CardFacts) -> str:
    """The whole card: front matter, sections, and a last line that remembers which data
    eval/metrics.json holds (so `jiyi card` can say it again later)."""
    base = base_provenance(
        str(facts.config.get("model") or facts.meta.get("base_model")), facts.model_config
    )
    seen = scripts_seen(facts.config.get("train"), facts.labels)
    results = model_index_results(facts)
    sections = [
        front_matter(facts, base, seen, results),
        summary(facts, base),
        results_section(facts, results),
        calibration_section(facts),
        bias_section(facts),
        compression_section(facts),
        data_section(facts, seen),
        hyperparameter_section(facts),
        limitations_section(facts, base, seen),
        provenance_section(facts, base),
        reproduce_section(facts),
    ]
    state = {"eval_data": facts.eval_data, "eval_sha256": eval_digest(facts.folder)}
    body = "\n".join(s for s in sections if s)
    return body + f"\n{STATE_MARK}{json.dumps(state, ensure_ascii=False)} -->\n"


# ---------------------------------------------------------------------------------------------
# front matter


def model_index_results(facts: CardFacts) -> list[dict[str, Any]]:
    """HF `model-index` results: the latest evaluation in eval/, the --test evaluation of
    training when eval/ now holds another one, or a compressed folder's own measurement."""
    test_file = facts.config.get("test")
    found: list[tuple[dict[str, float], str | None]] = []
    if facts.compressed:  # its own measurement only: the run's numbers are the original's
        report = facts.compress_report or {}
        rows = report.get("results") or []
        mine = [r for r in rows if Path(str(r.get("path"))).resolve() == facts.folder.resolve()]
        if mine:
            found.append((scalars(mine[-1]), report.get("data")))
        return index_entries(facts, found)
    if facts.evaluation is not None:
        found.append((scalars(facts.evaluation), facts.eval_data))
    if facts.test and facts.eval_data != test_file:
        found.append((scalars(facts.test), test_file))
    return index_entries(facts, found)


def index_entries(
    facts: CardFacts, found: list[tuple[dict[str, float], str | None]]
) -> list[dict[str, Any]]:
    """One `model-index` result per (metrics, data): the task's metrics found in them."""
    test_file = facts.config.get("test")
    results = []
    for metrics, data in found:
        values = [(m, metrics[m]) for m in facts.spec.metrics if m in metrics]
        if not values:
            continue
        dataset: dict[str, Any] = {"type": "local", "name": str(data or "unrecorded data")}
        if data is not None and data == test_file:
            dataset["split"] = "test"
        results.append(
            {
                "task": {
                    "type": facts.spec.pipeline_tag or facts.spec.name,
                    "name": facts.spec.kind,
                },
                "dataset": dataset,
                "metrics": [{"type": m, "value": v, "name": m} for m, v in values],
            }
        )
    return results


def front_matter(
    facts: CardFacts, base: dict[str, Any], seen: dict | None, results: list[dict]
) -> str:
    import yaml

    meta: dict[str, Any] = {}
    if seen and seen["languages"]:
        meta["language"] = seen["languages"]
    if base["license"]:
        meta["license"] = str(base["license"]).lower()  # the Hub spells them so: mit, apache-2.0
    meta["base_model"] = base["hub_id"] or base["name"]
    if facts.config.get("train"):
        meta["datasets"] = [str(facts.config["train"])]
    used = {m["type"] for r in results for m in r["metrics"]}
    meta["metrics"] = [m for m in facts.spec.metrics if m in used]
    if facts.spec.pipeline_tag:
        meta["pipeline_tag"] = facts.spec.pipeline_tag
    meta["library_name"] = "transformers"
    meta["tags"] = ["jiyi", facts.spec.name] + (["compressed"] if facts.compressed else [])
    meta["model-index"] = [{"name": facts.folder.name, "results": results}]
    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{text}---\n"


# ---------------------------------------------------------------------------------------------
# prose


def summary(facts: CardFacts, base: dict[str, Any]) -> str:
    spec = facts.spec
    lines = [f"# {facts.folder.name}", ""]
    what = f"A {spec.kind} model (`{spec.pipeline_tag or spec.name}`, jiyi task `{spec.name}`)"
    origin = f"fine-tuned by `jiyi train` from `{base['name']}`"
    if facts.compressed:
        chain = ", ".join(s.get("method", "?") for s in facts.compressed.get("chain", []))
        what = f"A compressed ({chain}) {spec.kind} model (`{spec.pipeline_tag or spec.name}`)"
        origin = f"made by `jiyi compress` from `{facts.compressed.get('origin', {}).get('path')}`"
        origin += f", itself fine-tuned from `{base['name']}`" if facts.run_dir else ""
    lines.append(f"{what}, {origin}.")
    if facts.labels:
        shown = ", ".join(f"`{x}`" for x in facts.labels[:50])
        more = f" and {len(facts.labels) - 50} more" if len(facts.labels) > 50 else ""
        lines += ["", f"Labels ({len(facts.labels)}): {shown}{more}."]
    lines += ["", "This card was generated by jiyi from the files of the run folder; "
              "`jiyi card RUN_DIR` writes it again."]  # fmt: skip
    return "\n".join(lines) + "\n"
