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
    "hookimpl": "core.hookspecs",
    "hookspec": "core.hookspecs",
    "Initializer": "core.protocols",
    "Loss": "core.protocols",
    "Module": "core.protocols",
    "Optimizer": "core.protocols",
    "Parameter": "core.protocols",
    "decision_threshold": "core.protocols",
    "param": "core.protocols",
    "zero_grad": "core.protocols",
    "set_training": "core.protocols",
    "is_training": "core.protocols",
    "evaluating": "core.protocols",
    "buffers": "core.protocols",
    "TrainSettings": "core.settings",
    "Entry": "core.registry",
    "Registry": "core.registry",
    "default_registry": "core.registry",
    "PluginRecord": "core.registry",
    "load_registry": "core.discovery",
    "Sequential": "core.sequential",
    "LayerSpec": "core.assemble",
    "build_mlp": "core.assemble",
    "build_stack": "core.assemble",
    "mlp_specs": "core.assemble",
    "parse_layers": "core.stack",
    "disk_dataset": "core.data",
    "error_rate": "core.training",
    "fit": "core.training",
    "TrainResult": "core.experiment",
    "train": "core.experiment",
    "LoadedModel": "core.model_file",
    "load_model": "core.model_file",
    "save_model": "core.model_file",
    "Checkpointing": "core.checkpoint",
    "read_checkpoint": "core.checkpoint",
    "train_ensemble": "core.ensemble",
    "MultiRunResult": "core.multirun",
    "run_many": "core.multirun",
    "Comparison": "core.compare",
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
    from core.assemble import LayerSpec, build_mlp, build_stack, mlp_specs
    from core.data import disk_dataset
    from core.discovery import load_registry
    from core.errors import (
        DivergenceError, ModelFileError, NNError, PluginError, RegistrationError, SettingsError,
        ShapeError, StateError, UnknownComponentError,
    )
    from core.checkpoint import Checkpointing, read_checkpoint
    from core.ensemble import train_ensemble
    from core.model_file import LoadedModel, load_model, save_model
    from core.experiment import TrainResult, train
    from core.hookspecs import hookimpl, hookspec
    from core.protocols import (
        Initializer, Loss, Module, Optimizer, Parameter, buffers, decision_threshold, evaluating,
        is_training, param, set_training, zero_grad,
    )
    from core.registry import Entry, PluginRecord, Registry, default_registry
    from core.sequential import Sequential
    from core.settings import TrainSettings
    from core.stack import parse_layers
    from core.training import error_rate, fit
    from core.multirun import MultiRunResult, run_many
    from core.compare import Comparison
