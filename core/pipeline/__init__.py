"""The pipeline: whole runs, end to end, in three steps: settings -> the run to build
(resolve), -> a `Run` built once (prepare), -> trained (train); N runs batched as one
ensemble (ensemble), many seeds (multirun), grids of settings (compare), and what a run shows
the user (figures, progress). The top room: it may import every room below it
(`core.plugin`, `core.network`, `core.data`, `core.training`, `core.files`) and the ground floor;
nothing in core imports it, only `core/__init__.py`'s lazy map and cli.py.
"""
