"""`jiyi tune`: hyperparameter search over `jiyi train` settings, on Optuna (the `tune` extra).

    jiyi tune --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
              --model minilm --trials 20 --budget 30m --output runs/tune

`space` reads the search space (YAML, or the task's default), `study` runs the Optuna study (a
trial is a `jiyi train` run, pruned through `jiyi.loop.evaluation_hook`), `report` writes
best/, trials.csv and tune.html, `cli` is the verb. Importing this package imports no optuna.
"""
