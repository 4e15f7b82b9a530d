"""Model-file format versions, and the migrations that bring an older file to today's layout.

A file records the layout it was written in (`format_version`). Loading verifies its bytes as
written, then `migrate` applies `MIGRATIONS[v]` for v = its version .. FORMAT_VERSION - 1, each
taking version v to v + 1, so the rest of the reader knows one layout only: today's.

Changing the layout (a header field added, renamed or given a new meaning, a tensor named
differently, a TrainSettings default changed: a file lacking that setting meant the old one)
means: FORMAT_VERSION + 1, a migration from the previous version that says what
an older file meant, a fixture written by the previous version (tests/fixtures/model_files),
and `LAYOUT` updated. tests/test_model_file_versions.py fails until all four are there.

Version 1 (2026-11-26 to 2026-12-03): the first files and five additions that came without a
version bump, on parallel branches and in different orders (git history has files with a
dataset entry but no checksum, and the reverse), so a version-1 file may hold any of them:
  - settings fields added since the first files (preprocess, schedule, optimizer_args, ...)
  - `act`/`hidden` written as the defaults beside `layers` (nn-scratch 0.1.0), later null
  - `checksum` (a file without one loads with a note that it is unverified)
  - `dataset`, the data's metadata (before it, every file was trained on the disk task)
  - buffers (batchnorm's running statistics) as "modules.{i}.{name}" tensors: nothing to
    migrate, the modules that have buffers came with them
  - a checkpoint's "rng.init" (absent before dropout: no module drew from that generator)
Version 2: the same header with every one of those additions present (only a checkpoint
migrated from version 1 may name streams it holds no state for, in training.unsaved_streams).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

FORMAT_VERSION = 2
CHECKSUM_KEY = "checksum"  # the header field holding checksum(rest of header, tensors)
CHECKSUM_REQUIRED_FROM = 2  # a file of this version or later without a checksum was edited

Header = dict[str, Any]
Tensors = dict[str, torch.Tensor]

# The header's fields in today's layout (beside "format", "format_version"), by kind of file;
# tests/test_model_file_versions.py checks that a file written now has exactly these.
LAYOUT = {
    "model": ["kind", "framework_version", "in_features", "dtype", "architecture", "init", "loss",
              "settings", "preprocessing", "components", "dataset", CHECKSUM_KEY],
    "checkpoint": ["kind", "framework_version", "in_features", "dtype", "architecture", "init",
                   "loss", "settings", "preprocessing", "components", "dataset", "training",
                   CHECKSUM_KEY],
    "dataset": ["name", "task", "feature_names", "input_shape", "class_names", "target_names",
                "one_hot"],
    "training": ["epoch", "losses", "every", "optimizer_numbers"],
}


# -- version 1 -> 2 ----------------------------------------------------------------------

# A setting a file lacks reads as its TrainSettings default (the data fields are written only
# when not their defaults). Version 2 fixes those defaults (a later change is a new version):
SETTINGS_DEFAULTS = {
    "act": "tanh", "loss": "bce", "init": "xavier", "optimizer": "adam", "hidden": [25, 25, 25],
    "epochs": 150, "lr": 0.04, "batch_size": 200, "seed": 0, "n_train": 1000, "n_test": 1000,
    "dtype": "float32", "layers": None, "device": "cpu", "preprocess": "standardize",
    "schedule": "cosine", "optimizer_args": {}, "data": "disk", "target": None,
    "test_fraction": 0.25, "val_fraction": 0.0, "patience": None,
}
# The settings a version-1 file may lack whose default means another run than the one that
# wrote it: before `preprocess` a run had no input step; before `schedule`, a constant rate.
# (The others added since, such as device, optimizer_args and the data fields, default to
# what runs did before them.)
SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"preprocess": "none", "schedule": "constant"}

# What every file from before the dataset entry was trained on: the report's disk task.
DATASET_BEFORE_DATASETS: dict[str, Any] = {
    "name": "disk", "task": "binary", "feature_names": ["x", "y"], "input_shape": [2],
    "class_names": ["0", "1"], "target_names": [], "one_hot": False,
}


def settings_v1_to_v2(header: Header) -> None:
    """Settings fields the file predates get the value its run had; with `layers` (the whole
    network) act and hidden are null, as they are written now (0.1.0 wrote the defaults)."""
    settings = header.get("settings")
    if not isinstance(settings, dict):
        return  # the header check names it
    for name, before in SETTINGS_BEFORE_THEY_EXISTED.items():
        settings.setdefault(name, copy.deepcopy(before))
    if settings.get("layers") is not None:
        settings["act"] = settings["hidden"] = None


def dataset_v1_to_v2(header: Header) -> None:
    """A file without a dataset entry was trained on the disk task: record that."""
    header.setdefault("dataset", copy.deepcopy(DATASET_BEFORE_DATASETS))


def streams_v1_to_v2(header: Header, tensors: Tensors) -> None:
    """A checkpoint without "rng.init" was written before dropout, so no module drew from the
    weights' generator while training: resuming leaves it as rebuilding the network left it."""
    training = header.get("training")
    if header.get("kind") == "checkpoint" and isinstance(training, dict) and "rng.init" not in tensors:
        training["unsaved_streams"] = ["init"]


def checksum_v1_to_v2(header: Header) -> None:
    """A file from before checksums stays unverified (`read_model_file` notes it): a checksum
    computed now would vouch for bytes nobody checked. Recorded as null."""
    header.setdefault(CHECKSUM_KEY, None)


def v1_to_v2(header: Header, tensors: Tensors) -> tuple[Header, Tensors]:
    """Version 1 -> 2: each addition of version 1's lifetime, wherever the file lacks it."""
    settings_v1_to_v2(header)
    dataset_v1_to_v2(header)
    streams_v1_to_v2(header, tensors)
    checksum_v1_to_v2(header)
    return header, tensors


# MIGRATIONS[v] takes a file of version v to version v + 1 (header and tensors, as read).
MIGRATIONS: dict[int, Callable[[Header, Tensors], tuple[Header, Tensors]]] = {1: v1_to_v2}


def migrate(header: Header, tensors: Tensors) -> tuple[Header, Tensors]:
    """The file's header and tensors in today's layout (format_version FORMAT_VERSION).

    `header["format_version"]` must be an integer from 1 to FORMAT_VERSION (the reader checks
    it first). The caller's header is not changed: migrations work on a copy.
    """
    header = copy.deepcopy(header)
    tensors = dict(tensors)
    for version in range(header["format_version"], FORMAT_VERSION):
        header, tensors = MIGRATIONS[version](header, tensors)
        header["format_version"] = version + 1
    return header, tensors
