"""Checkpoints and resume: a model file plus everything the rest of the run depends on.

A checkpoint is a model file (see core.files.model_file) of kind "checkpoint", with more tensors
  "optimizer.{key}"  the optimizer's state_dict() tensors (SGD velocities, Adam moments)
  "rng.shuffle"      the state of the generator that orders each epoch (uint8 tensor)
  "rng.init"         the state of the generator the weights were drawn from, which dropout
                     goes on drawing from
and a "training" section in the header:
  epoch              epochs completed; losses has that many entries
  losses             mean training loss of each completed epoch (JSON floats round-trip)
  every              epochs between checkpoints, kept when resuming
  optimizer_numbers  the optimizer's state_dict() numbers (Adam's step count)
  unsaved_streams    only in a checkpoint migrated from format version 1 written before
                     dropout: the streams it holds no state for, left as the rebuilt run has
                     them (core/files/versions.py)

The data and the initial weights are not stored: the data are drawn again from the seed
(the same draws bit for bit) and the initial weights are overwritten by the saved ones, so
a resumed run ends exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.network.assemble import LayerSpec
from core.files.atomic import atomic_write_bytes, check_writable
from core.errors import DivergenceError, NNError, SettingsError
from core.files.model_file import (
    ModelFile,
    check_components,
    component_records,
    encode,
    load_weights,
    model_header,
    model_tensors,
    read_model_file,
    settings_from_dict,
)
from core.network.protocols import Optimizer
from core.plugin.registry import Registry, default_registry
from core.network.sequential import Sequential
from core.training.settings import TrainSettings
from core.training.loop import divergence, divergence_error


# The generators a checkpoint holds ("rng.{name}"): the epochs' order, and the weights'
# stream that dropout goes on drawing from.
STREAMS = ("shuffle", "init")


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run writes its checkpoint."""

    path: Path  # one file, replaced atomically at each checkpoint
    every: int  # epochs between checkpoints (>= 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # accept a str too
        if not isinstance(self.every, int) or self.every < 1:
            raise SettingsError(f"checkpoint every must be an integer >= 1, got {self.every!r}")


def checkpoint_plan(
    *, checkpoint: str | None, every: int | None, save: str | None,
    resume: Checkpoint | None = None,
) -> Checkpointing | None:
    """Resolve the checkpoint options of `nn-cli train` into a plan (or None).

    --checkpoint alone checkpoints every epoch; --checkpoint-every alone writes beside
    --save ("model.safetensors" -> "model.ckpt.safetensors"); a resumed run goes on
    writing to the file it resumed from, as often as before, unless told otherwise.
    """
    if every is not None and every < 0:
        raise SettingsError(f"checkpoint-every must be an integer >= 0 (0: none), got {every}")
    if resume is not None:
        checkpoint = checkpoint or resume.file.path
        every = resume.every if every is None else every
    if every == 0:
        return None
    if checkpoint is None:
        if every is None:
            return None
        if save is None:
            raise SettingsError(
                "--checkpoint-every needs --checkpoint PATH, or --save PATH to write beside"
            )
        saved = Path(save)
        checkpoint = str(saved.with_name(f"{saved.stem}.ckpt{saved.suffix or '.safetensors'}"))
    if save is not None and Path(checkpoint).resolve() == Path(save).resolve():
        raise SettingsError(f"--checkpoint and --save name the same file {save!r}; give two files")
    return Checkpointing(check_writable(checkpoint), every or 1)


def optimizer_state(optimizer: Optimizer, name: str) -> dict[str, Any]:
    state_dict = getattr(optimizer, "state_dict", None)
    if not callable(state_dict):
        raise SettingsError(
            f"optimizer {name!r} has no state_dict(), which checkpoints need; "
            f"train without --checkpoint-every or add state_dict()/load_state_dict() to it"
        )
    return state_dict()


@dataclass
class RunState:
    """The live objects of a run that a checkpoint captures."""

    settings: TrainSettings
    specs: list[LayerSpec]
    model: Sequential
    optimizer: Optimizer
    generators: dict[str, torch.Generator]  # by stream name, e.g. {"shuffle": ...}
    registry: Registry
    in_features: int = 2
    preprocessing: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None  # the data's metadata (names, task), as model files keep


def save_checkpoint(path: str | os.PathLike, run: RunState, losses: list[float], every: int) -> Path:
    """Write `run` after `len(losses)` epochs to `path`, atomically."""
    header = model_header(
        specs=run.specs, settings=run.settings, in_features=run.in_features,
        registry=run.registry, preprocessing=run.preprocessing, kind="checkpoint",
        dataset=run.dataset,
    )
    header["components"] += component_records(run.registry, [("optimizer", run.settings.optimizer)])
    tensors = model_tensors(run.model)
    numbers = {}
    for key, value in optimizer_state(run.optimizer, run.settings.optimizer).items():
        if isinstance(value, torch.Tensor):
            tensors[f"optimizer.{key}"] = value.cpu().contiguous()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = value
        else:
            raise SettingsError(
                f"optimizer {run.settings.optimizer!r} state {key!r} is a {type(value).__name__}; "
                f"a state_dict() holds tensors and numbers only"
            )
    for name, gen in run.generators.items():
        tensors[f"rng.{name}"] = gen.get_state()  # (5056,) uint8 on the CPU
    header["training"] = {
        "epoch": len(losses), "losses": list(losses), "every": every,
        "optimizer_numbers": numbers,
    }
    return atomic_write_bytes(path, encode(tensors, header))


@dataclass
class Checkpoint:
    """A checkpoint read back: what to resume, and `restore` to put it into a new run."""

    file: ModelFile
    settings: TrainSettings
    epoch: int  # epochs completed
    losses: list[float]  # one per completed epoch
    every: int  # epochs between checkpoints in the run that wrote it

    def restore(
        self, specs: list[LayerSpec], model: Sequential, optimizer: Optimizer,
        generators: dict[str, torch.Generator],
    ) -> list[float]:
        """Load weights, optimizer state and generator states; return the loss history."""
        file = self.file
        if [s.to_dict() for s in specs] != file.header["architecture"]:
            raise file.fail("its architecture differs from the one its settings build")
        load_weights(file, model)
        state: dict[str, Any] = dict(file.header["training"]["optimizer_numbers"])
        state |= {k.removeprefix("optimizer."): t for k, t in file.tensors.items()
                  if k.startswith("optimizer.")}
        load_state_dict = getattr(optimizer, "load_state_dict", None)
        if not callable(load_state_dict):
            raise file.fail(f"optimizer {self.settings.optimizer!r} has no load_state_dict()")
        try:
            load_state_dict(state)
        except (NNError, KeyError, TypeError, ValueError, RuntimeError) as e:
            raise file.fail(f"optimizer state does not fit: {e}") from None
        for name, gen in generators.items():
            set_generator_state(file, name, gen)
        return list(self.losses)


def set_generator_state(file: ModelFile, name: str, gen: torch.Generator) -> None:
    """Put the file's "rng.{name}" into `gen`; a missing or bad state is a ModelFileError."""
    state_tensor = file.tensors.get(f"rng.{name}")
    if state_tensor is None and name in file.header["training"].get("unsaved_streams", ()):
        return  # written before any module drew from it while training
    if state_tensor is None or state_tensor.dtype != torch.uint8:
        raise file.fail(f"missing or bad generator state 'rng.{name}'")
    try:
        gen.set_state(state_tensor)
    except RuntimeError as e:
        raise file.fail(f"bad generator state 'rng.{name}': {e}") from None


def read_checkpoint(path: str | os.PathLike, registry: Registry | None = None) -> Checkpoint:
    """Parse and check a checkpoint file; every problem is a one-line ModelFileError."""
    registry = registry or default_registry()
    file = read_model_file(path, kind="checkpoint")
    settings = settings_from_dict(file.header["settings"], strict=True, file=file)
    check_components(file, registry, extra=[("optimizer", settings.optimizer)])
    training = file.header.get("training")
    if not isinstance(training, dict):
        raise file.fail("checkpoint has no 'training' section")
    unsaved = training.get("unsaved_streams", [])
    if not (isinstance(unsaved, list) and set(unsaved) <= set(STREAMS)):
        raise file.fail(f"checkpoint 'training' unsaved_streams {unsaved!r} is not a list of "
                        f"{', '.join(STREAMS)}")
    epoch, losses, every = training.get("epoch"), training.get("losses"), training.get("every")
    numbers = training.get("optimizer_numbers")
    if not (isinstance(epoch, int) and isinstance(losses, list) and len(losses) == epoch
            and 0 <= epoch <= settings.epochs and isinstance(every, int) and every >= 1
            and isinstance(numbers, dict)
            and all(isinstance(v, float) and math.isfinite(v) for v in losses)):
        raise file.fail("checkpoint 'training' section is inconsistent (epoch, losses, every)")
    for name in STREAMS:  # now, not once training has started
        set_generator_state(file, name, torch.Generator())
    file.note_if_unverified()
    return Checkpoint(file, settings, epoch, losses, every)


class AfterEpoch:
    """What a run does after each epoch: stop on divergence, checkpoint, report progress.

    Given to `fit` as its `on_epoch`; counts epochs from the resumed ones, if any.
    """

    def __init__(
        self,
        run: RunState,
        checkpointing: Checkpointing | None,
        on_epoch: Callable[[int, float], None] | None,
        *,
        resumed: Checkpoint | None = None,
        initial_loss: float | None = None,
    ):
        self.initial_loss = initial_loss  # the untrained network's loss: see divergence()
        if checkpointing is not None:
            optimizer_state(run.optimizer, run.settings.optimizer)  # fail before epoch 1
        self.run, self.checkpointing, self.on_epoch = run, checkpointing, on_epoch
        self.losses = list(resumed.losses) if resumed else []
        # Epoch of the newest good checkpoint on disk: the resumed one, if it is ours.
        self.last_checkpoint = None
        if resumed and checkpointing and checkpointing.path.resolve() == Path(resumed.file.path).resolve():
            self.last_checkpoint = resumed.epoch

    def __call__(self, _: int, loss: float) -> None:
        self.losses.append(loss)
        epoch = len(self.losses)
        finite = all(bool(torch.isfinite(p.value).all()) for p in self.run.model.parameters())
        why = divergence(loss, finite, self.initial_loss)
        if why is not None:
            raise self.divergence(epoch, why)
        plan = self.checkpointing
        if plan is not None and epoch % plan.every == 0:
            save_checkpoint(plan.path, self.run, self.losses, plan.every)
            self.last_checkpoint = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch, loss)

    def divergence(self, epoch: int, what: str) -> DivergenceError:
        lr = self.run.settings.lr
        kept = (
            f"; the last good checkpoint (epoch {self.last_checkpoint}) is kept in "
            f"{self.checkpointing.path}"
            if self.checkpointing is not None and self.last_checkpoint is not None else ""
        )
        return divergence_error(epoch, what, lr, kept=kept)

