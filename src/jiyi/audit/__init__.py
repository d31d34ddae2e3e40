"""`jiyi audit`: likely label errors in a labelled file, by confident learning (Northcutt et al.
2021) on out-of-sample probabilities, and texts repeated under different labels.

- `confident`: the method (thresholds, confident joint, estimated joint, noise, pruning, ranking);
- `crossval`: stratified k-fold, a logistic head on frozen context vectors; `finetune`: a jiyi
  classifier fine-tuned per fold;
- `duplicates`: equal / near-equal texts with different labels; `clean`: `--write-clean`;
- `run`: the workflow and its outputs; `cli`: the verb.
"""

from jiyi.audit.cli import add_parsers

__all__ = ["add_parsers"]
