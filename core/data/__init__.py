"""Data: the built-in disk task (disk), input preprocessing fitted on the training inputs
(preprocess) and reading rows from CSV/JSON files (tabular); datasets belong here. It may import
the ground floor (`core.errors`, `core.lazy`), `core.plugin` and `core.network`, never training,
files or pipeline.
"""
