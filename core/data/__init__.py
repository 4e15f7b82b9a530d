"""Data: the dataset contract and `--data` text (dataset), the built-in disk task (disk), splits
(split), a run's sets made ready to train on (preparation), input preprocessing fitted on the
training inputs (preprocess) and reading rows from CSV/JSON files (tabular, reading). It may
import the ground floor (`core.errors`, `core.lazy`, `core.keyvalue`), `core.plugin` and
`core.network`, never training, files or pipeline.
"""
