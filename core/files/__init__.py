"""Files: atomic writes (atomic), model files (model_file), checkpoints and resuming (checkpoint),
prediction and evaluation on files with a saved model (inference) and output folders (paths).
It may import the ground floor (`core.errors`, `core.lazy`, `core.keyvalue`), `core.plugin`,
`core.network`, `core.data` and `core.training`, never `core.pipeline`.
"""
