"""The framework's core: protocols, registry, Sequential, data and the training loop.

Core knows no concrete component; the built-in ones arrive as plugins (see registry.toml).
"""

from core.errors import (
    DivergenceError,
    ModelFileError,
    NNError,
    RegistrationError,
    SettingsError,
    StateError,
    UnknownComponentError,
)
from core.hookspecs import hookimpl, hookspec
from core.protocols import (
    Initializer,
    Loss,
    Module,
    Optimizer,
    Parameter,
    decision_threshold,
    param,
    zero_grad,
)
from core.settings import TrainSettings
from core.registry import Entry, Registry, default_registry
from core.sequential import Sequential
from core.assemble import LayerSpec, build_mlp, build_stack, mlp_specs
from core.data import disk_dataset
from core.training import error_rate, fit
from core.experiment import TrainResult, train
from core.model_file import LoadedModel, load_model, save_model
from core.checkpoint import Checkpointing, read_checkpoint

__all__ = [
    "Entry", "Initializer", "Loss", "Module", "NNError", "Optimizer", "Parameter",
    "RegistrationError", "Registry", "Sequential", "SettingsError", "StateError",
    "LayerSpec", "TrainResult", "TrainSettings", "UnknownComponentError", "build_mlp",
    "build_stack", "mlp_specs",
    "decision_threshold", "default_registry", "disk_dataset", "error_rate", "fit",
    "hookimpl", "hookspec", "param", "train", "zero_grad",
    "Checkpointing", "DivergenceError", "LoadedModel", "ModelFileError", "load_model",
    "read_checkpoint", "save_model",
]
