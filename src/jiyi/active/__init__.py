"""Active learning: which unlabelled rows to label next (`jiyi select`).

`jiyi.active.strategies` holds the strategies (pure numpy), `jiyi.active.run` the workflow
(read the pool, score it with a run or embed it with a model, write the rows to label) and
`jiyi.active.cli` the verb. Importing this package imports no torch.
"""

UNCERTAINTY_STRATEGIES = ("uncertainty", "margin", "entropy")  # rank by a run's probabilities
STRATEGIES = (*UNCERTAINTY_STRATEGIES, "diversity", "hybrid")
HYBRID_MEASURE = "margin"  # how hybrid ranks its uncertain candidates
