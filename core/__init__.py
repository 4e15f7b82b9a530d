"""The framework's core: protocols, registry, Sequential, data and the training loop.

Core knows no concrete component; the built-in ones arrive as plugins (see registry.toml).
Names are imported on first use (PEP 562), so `from core import hookimpl` does not pull in
torch: `nn-cli --help` and `nn-cli list` start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_WHERE = {
    "NNError": "core.errors",
    "PluginError": "core.errors",
    "DivergenceError": "core.errors",
    "ModelFileError": "core.errors",
    "RegistrationError": "core.errors",
    "SettingsError": "core.errors",
    "StateError": "core.errors",
    "ShapeError": "core.errors",
    "UnknownComponentError": "core.errors",
    "hookimpl": "core.plugin.hookspecs",
    "hookspec": "core.plugin.hookspecs",
    "Initializer": "core.network.protocols",
    "Loss": "core.network.protocols",
    "Module": "core.network.protocols",
    "Optimizer": "core.network.protocols",
    "Parameter": "core.network.protocols",
    "decision_threshold": "core.network.protocols",
    "param": "core.network.protocols",
    "composite": "core.network.protocols",
    "zero_grad": "core.network.protocols",
    "set_training": "core.network.protocols",
    "is_training": "core.network.protocols",
    "evaluating": "core.network.protocols",
    "no_input_grad": "core.network.protocols",
    "buffers": "core.network.protocols",
    "TrainSettings": "core.training.settings",
    "Entry": "core.plugin.registry",
    "Registry": "core.plugin.registry",
    "default_registry": "core.plugin.registry",
    "PluginRecord": "core.plugin.registry",
    "load_registry": "core.plugin.discovery",
    "Sequential": "core.network.sequential",
    "Residual": "core.network.residual",
    "residual": "core.network.assemble",
    "repeat": "core.network.assemble",
    "LayerSpec": "core.network.assemble",
    "build_mlp": "core.network.assemble",
    "build_stack": "core.network.assemble",
    "mlp_specs": "core.network.assemble",
    "parse_layers": "core.network.stack",
    "disk_dataset": "core.data.disk",
    "Dataset": "core.data.dataset",
    "DataError": "core.data.dataset",
    "build_dataset": "core.data.dataset",
    "read_data_file": "core.data.reading",
    "error_rate": "core.training.evaluate",
    "fit": "core.training.loop",
    "TrainResult": "core.training.result",
    "train": "core.pipeline.train",
    "train_run": "core.pipeline.train",
    "resolve": "core.pipeline.resolve",
    "ResolvedRun": "core.pipeline.resolve",
    "prepare": "core.pipeline.prepare",
    "Run": "core.pipeline.prepare",
    "LoadedModel": "core.files.model_file",
    "load_model": "core.files.model_file",
    "save_model": "core.files.model_file",
    "Checkpointing": "core.files.checkpoint",
    "read_checkpoint": "core.files.checkpoint",
    "train_ensemble": "core.pipeline.ensemble",
    "MultiRunResult": "core.pipeline.multirun",
    "run_many": "core.pipeline.multirun",
    "Comparison": "core.pipeline.compare",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # for type checkers and editors: the eager imports this file stands for
    from core.network.assemble import LayerSpec, build_mlp, build_stack, mlp_specs, repeat, residual
    from core.network.residual import Residual
    from core.data.dataset import DataError, Dataset, build_dataset
    from core.data.disk import disk_dataset
    from core.data.reading import read_data_file
    from core.plugin.discovery import load_registry
    from core.errors import (
        DivergenceError, ModelFileError, NNError, PluginError, RegistrationError, SettingsError,
        ShapeError, StateError, UnknownComponentError,
    )
    from core.files.checkpoint import Checkpointing, read_checkpoint
    from core.pipeline.ensemble import train_ensemble
    from core.files.model_file import LoadedModel, load_model, save_model
    from core.pipeline.prepare import Run, prepare
    from core.pipeline.resolve import ResolvedRun, resolve
    from core.pipeline.train import train, train_run
    from core.training.result import TrainResult
    from core.plugin.hookspecs import hookimpl, hookspec
    from core.network.protocols import (
        Initializer, Loss, Module, Optimizer, Parameter, buffers, composite, decision_threshold, evaluating,
        is_training, no_input_grad, param, set_training, zero_grad,
    )
    from core.plugin.registry import Entry, PluginRecord, Registry, default_registry
    from core.network.sequential import Sequential
    from core.training.settings import TrainSettings
    from core.network.stack import parse_layers
    from core.training.evaluate import error_rate
    from core.training.loop import fit
    from core.pipeline.multirun import MultiRunResult, run_many
    from core.pipeline.compare import Comparison
