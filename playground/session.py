"""One tab's training run, in a worker thread that the web server only reads frames from.

The worker owns every tensor of the run: commands (play, pause, step, reset, snapshot the
model) reach it through a queue and it acts on them between epochs, so the server never
waits on training and never sees a half-updated network. Frames are drawn by a second
thread, the painter, from a copy of the weights taken between epochs, so that drawing a
100 x 100 heat map (a forward pass over 10,000 points) overlaps training instead of
pausing it. Each epoch is the framework's own
`core.training.loop.fit` for one epoch; N epochs here leave exactly the network that
`core.pipeline.train.train` leaves after N epochs with the same settings (tested).

What the page draws travels as JSON text built in the worker: a *setup* (the points and
the plotted square, once per reset) and *frames* (epoch, losses, errors, the heat map), at
most `fps` a second, so a network that trains faster than the page draws skips frames,
not epochs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import torch

from core.data.dataset import build_from_factory
from core.errors import NNError, SettingsError
from core.files.model_file import model_file_bytes
from core.network.protocols import decision_threshold
from core.network.stack import constructor_parameters
from core.pipeline.prepare import prepare
from core.pipeline.resolve import EVERY_FIELD, resolve
from core.pipeline.train import result_of
from core.plugin.context import context_arguments
from core.plugin.registry import Registry
from core.training.components import make_loss
from core.training.evaluate import output_errors, predicted_classes
from core.training.loop import fit
from core.training.penalty import Penalty

from playground.budget import draw_rows, forward_in_slices, numbers_per_row, run_bytes
from playground import views
from playground.config import LIMITS, ConfigError, PlaygroundConfig
from playground.inspection import VIEW_SWITCHES, Inspection

FPS = 15  # frames a second while training (the page needs 10 to look live)
PAINTER_NICENESS = 5  # on a busy machine, drawing yields to training: frames drop, not epochs


@dataclass
class Run:
    """One tab's run, from its seed: the run `core.pipeline.train.train` would prepare
    (`core.pipeline.prepare`), trained here one epoch at a time."""

    config: PlaygroundConfig
    registry: Registry

    def __post_init__(self) -> None:
        entry = self.registry.get("dataset", self.config.data)
        settings = self.config.settings(constructor_parameters(entry.factory))
        # The page chose every setting: no dataset default applies.
        resolved = resolve(settings, self.registry, EVERY_FIELD)
        _check_arguments(resolved.network_specs(1))  # the widths, before any weight is drawn
        prepared = prepare(resolved, self.registry)
        if self.config.linear_model:  # no hidden layer: the inputs straight to the outputs
            layers = f"linear:out={prepared.out_features}"
            resolved = dataclasses.replace(  # the same data: only the network changes
                resolve(replace(settings, layers=layers), self.registry, EVERY_FIELD),
                dataset=prepared.data.dataset)
            prepared = prepare(resolved, self.registry)
        self.prepared, self.settings, self.specs = prepared, prepared.settings, prepared.specs
        self.data, self.raw = prepared.data, prepared.split  # the points as drawn: plotted
        with torch.set_grad_enabled(False):
            self.model = prepared.model
            _check_size(self.model)
            # A second network and loss that the painter draws from, so that drawing never
            # touches what the trainer's backward needs (each module caches its last input).
            self.view = prepared.build_network()
            self.view.eval()  # dropout off, batch norm on its running statistics
            self.per_row = numbers_per_row(self.view, prepared.width, self.data.x_train.dtype)
            _check_memory(self, prepared.width, prepared.out_features)
        self.loss, self.optimizer = prepared.loss, prepared.optimizer
        self.view_loss = make_loss(self.registry, self.settings)
        self.shuffle = prepared.generators["shuffle"]
        self.losses: list[float] = []  # mean training loss of each epoch, as fit reports it
        self.kind = views.view_kind(self.data.dataset)  # plane, curve, surface or image
        self.probe: torch.Tensor | None = None  # an image drawn on the page (views.py)
        self.image = views.image_of(self.raw, self.data.dataset) if self.kind == "image" else None
        if self.kind == "plane":
            self.domain = _domain(torch.cat([self.raw.x_train, self.raw.x_test]))
            self.grid = _grid(self.domain, self.config.grid, self.data.preprocessing,
                              self.data.x_train.dtype)
        else:  # a curve's axis, a surface's square; no grid for images
            self.domain = views.domain_of(self.kind, torch.cat([self.raw.x_train, self.raw.x_test]))
            self.grid = self.data.x_train[:0] if self.kind == "image" else views.grid_of(
                self.kind, self.domain, self.config.grid, self.data.preprocessing,
                self.data.x_train.dtype)
        # Inside the network (playground/inspection.py): a watch on the optimizer's steps,
        # and the diagram and gradients each frame draws.
        self.inspection = Inspection(self)

    @property
    def epoch(self) -> int:
        return len(self.losses)

    def train_epoch(self, stopped=None, after_step=None) -> bool:
        """One more epoch; False (and no epoch counted) if `stopped()` ended it early.
        `after_step(batch, batches)`, if given, follows every step (one-step mode)."""
        watch = self.inspection.watch  # the optimizer, passed through: the same steps
        watch.batch, watch.epochs_done = 0, self.epoch
        watch.every, watch.after_step = after_step is not None, after_step
        with self.inspection.taps() if after_step else contextlib.nullcontext() as taps:
            watch.taps = taps
            losses = fit(
                self.model, self.loss, watch, self.data.x_train, self.data.y_train,
                epochs=1, batch_size=self.config.batch, generator=self.shuffle, stop=stopped,
                penalty=Penalty(self.settings.l1, self.settings.l2),
            )
        watch.taps = None
        self.losses += losses
        return bool(losses)

    def setup(self) -> dict[str, Any]:
        """The points and the plotted square: sent once per reset."""
        raw, dataset = self.raw, self.data.dataset
        setup = {
            "domain": self.domain, "grid": self.config.grid, "classes": dataset.n_classes,
            "class_names": list(dataset.class_names), "data": self.settings.data,
            "config": self.config.to_dict(), "network": [s.to_dict() for s in self.specs],
            "view": self.kind, "task": dataset.task,
        }
        if self.kind == "plane":
            setup.update(train=_points(raw.x_train, raw.y_train), test=_points(raw.x_test, raw.y_test))
        else:
            setup.update(views.setup_of(self.kind, raw, dataset))
        return setup

    def sync_view(self) -> None:
        """Copy the trained weights and buffers (running statistics) into the network the
        painter draws from, which stays in evaluation mode."""
        for view, trained in zip(self.view.parameters(), self.model.parameters()):
            view.value.copy_(trained.value)
        trained_buffers = self.model.buffers()
        for name, buffer in self.view.buffers().items():
            buffer.copy_(trained_buffers[name])
        self.inspection.sync()  # the gradients of the step that left these weights

    def frame(self, epoch: int, stopped=None) -> dict[str, Any] | None:
        """Where the view network stands: losses, errors and the heat map (None if
        `stopped()` said the run ended while drawing)."""
        d = self.data
        with torch.set_grad_enabled(False):
            try:
                train_loss, train_error = self.measure(d.x_train, d.y_train, d.labels_train,
                                                       stopped)
                test_loss, test_error = self.measure(d.x_test, d.y_test, d.labels_test, stopped)
                if self.kind == "plane":
                    classes, strength = self.heatmap(stopped)
                    drawn = {"heatmap": {"classes": _b64(classes), "strength": _b64(strength)}}
                else:  # a curve, a surface, a drawn digit's probabilities
                    drawn = views.fitted(self, stopped)
                inside = self.inspection.frame(self.view)  # diagram, gradients, one step
            except _Stopped:
                return None
            finally:  # a one-row forward: every module's cache shrinks to one row
                self.view.forward(d.x_train[:1])
        return {
            "epoch": epoch, "train_loss": train_loss, "test_loss": test_loss,
            "train_error": train_error, "test_error": test_error, **drawn, **inside,
        }

    def measure(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor,
                stopped=None) -> tuple[float, float]:
        """The view network's mean loss and error on one set, from one forward pass."""
        out = self.view_forward(x, stopped)  # (n, outputs)
        error = output_errors(out, self.view_loss, labels, task=self.data.task,
                              one_hot=self.data.one_hot, preprocessing=self.data.preprocessing)
        return self.view_loss.forward(out, y).item(), error.item()

    def view_forward(self, x: torch.Tensor, stopped=None) -> torch.Tensor:
        """The view network's outputs for x, in slices of bounded memory (playground.budget)."""
        out = forward_in_slices(self.view, x, draw_rows(self.per_row), stopped)
        if out is None:
            raise _Stopped
        return out

    def heatmap(self, stopped=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each grid cell's class and how sure the network is, as bytes (grid * grid,)."""
        scores = self.view_forward(self.grid, stopped)  # (cells, outputs)
        classes = predicted_classes(scores, self.view_loss, self.data.one_hot).to(torch.uint8)
        if self.data.one_hot:  # how far the top class's probability is above a coin toss
            k = scores.shape[-1]
            top = (scores.double() - scores.double().logsumexp(-1, keepdim=True)).exp().amax(-1)
            sureness = (top - 1 / k) / (1 - 1 / k)  # (cells,), 0 to 1
        else:
            # NOTE: scores of different losses live on different scales (logits, [0, 1]); the
            # shade is the margin over the grid's 95th percentile, so every loss gets contrast.
            distance = (scores[:, 0].double() - decision_threshold(self.view_loss)).abs()
            scale = distance.kthvalue(max(1, int(0.95 * distance.numel()))).values
            sureness = distance / scale.clamp_min(1e-12)  # (cells,)
        strength = sureness.clamp(0.0, 1.0).mul(255).round().to(torch.uint8)
        return classes, strength

    def model_bytes(self) -> bytes:
        """The network now, as a model file `nn-cli predict` loads."""
        if self.epoch == 0:
            raise SessionStateError("train at least one epoch before downloading the model")
        settings = replace(self.settings, epochs=self.epoch)
        result = result_of(settings, list(self.losses), self.specs, self.model, self.loss,
                           self.data)
        return model_file_bytes(result, registry=self.registry)


def playable_datasets(registry: Registry) -> dict[str, dict[str, Any]]:
    """Every registered data set that draws its points from the run's generator and
    builds, with its defaults, into data the page draws (views.view_kind: 2-D points
    labelled by class, a curve, a surface); with its options and their defaults. Fixed
    tables (no `generator` parameter) are built here only when they take no option at all
    (scikit-learn's shipped ones), and kept only if they are small images (digits)."""
    found = {}
    for entry in registry.entries("dataset"):
        takes = constructor_parameters(entry.factory)
        fixed = "generator" not in takes
        if fixed and any(name not in context_arguments("dataset") for name in takes):
            continue
        try:
            with torch.set_grad_enabled(False):
                dataset = build_from_factory(entry.factory, {}, seed=0, name=entry.name,
                                             context={"n_train": 50, "n_test": 50})
        except Exception:  # it needs an option, a file or a package: not for the page
            continue
        kind = views.view_kind(dataset)
        if kind is not None and (kind == "image" or not fixed):
            options = {name: None if p.default is p.empty else p.default
                       for name, p in constructor_parameters(entry.factory).items()
                       if name not in context_arguments("dataset") and p.kind != p.VAR_KEYWORD}
            found[entry.name] = {"name": entry.name, "summary": entry.summary,
                                 "plugin": entry.plugin, "options": options,
                                 "classes": dataset.n_classes, "view": kind}
    return found


class SessionStateError(NNError):
    """A request that this session cannot serve in its present state (409)."""


class Session:
    """A run, the worker thread that trains it on command, and the painter that draws it.

    Closing it is prompt: training checks `closed` before each batch and drawing before
    each slice, so both threads end within a batch or a slice, and every request still
    queued (a model download) is answered with a 409 rather than left waiting. The
    threads drop the run's tensors as they end, whoever still holds the session.
    """

    def __init__(self, config: PlaygroundConfig, registry: Registry, *, fps: float = FPS,
                 max_epochs_per_second: float = LIMITS["max_epochs_per_second"]):
        self.config, self.registry = config, registry
        self.run: Run | None = Run(config, registry)  # a bad configuration fails here
        self.frame_interval = 1.0 / fps
        self.epoch_interval = 1.0 / max_epochs_per_second
        self.playing = False
        self.closed = False
        self.speed = config.speed  # epochs per frame (0: as many as train between frames)
        self._probe: torch.Tensor | None = None  # the image drawn on the page, kept over resets
        # The page's inside views (playground/inspection.py), switched without a reset;
        # one-step mode freezes training after each batch, mid-epoch, until told to go on.
        self.switches = {key: getattr(config, key) for key in VIEW_SWITCHES}
        self._pending: tuple | None = None  # a command the frozen batch took for the loop
        self._abort = False  # ends a frozen epoch early (reset): the epoch is not counted
        self.ended: str | None = None  # why the server stopped the run, for its page
        self.error: str | None = None
        self.last_command = time.monotonic()  # for the idle limit
        # (setup id, setup JSON, frame id, frame JSON), replaced whole by the painter
        self.published: tuple[int, str, int, str] = (0, "", 0, "")
        self._setups = self._frames = 0
        self._commands: queue.Queue = queue.Queue()
        self._paintings: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # a request is queued before closing or refused after
        self._idle = threading.Event()  # set while the painter has nothing to draw
        self._idle.set()
        self.run.inspection.options = dict(self.switches)
        self.run.sync_view()
        self._paint(self.run, True, self.run.epoch, False, None)  # the first frame, at once
        self._threads = [
            threading.Thread(target=self._work, name="playground-worker", daemon=True),
            threading.Thread(target=self._painter, name="playground-painter", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- called from the server (any thread) ---------------------------------------------

    def command(self, action: str) -> None:
        if action not in ("play", "pause", "step", "reset"):
            raise ConfigError(f"unknown action {action!r}; accepted: play, pause, step, reset")
        self.last_command = time.monotonic()
        self._commands.put((action, None))

    # -- the training controls (issue 25): changed while the run goes on, no reset
    def set_speed(self, speed: int) -> None:
        """Epochs per frame from now on (0: as many as the server trains between frames)."""
        self.last_command = time.monotonic()
        self.config = replace(self.config, speed=speed)  # a reset keeps it
        self._commands.put(("speed", speed))

    def set_probe(self, pixels: torch.Tensor) -> None:
        """An image drawn on the page (views.parse_probe): its class probabilities come
        with every frame from now on, from the network as it trains."""
        self.last_command = time.monotonic()
        self._commands.put(("probe", pixels))

    def model_bytes(self) -> Future:
        """The model file, once the worker gets to it; a SessionStateError if the run
        stops first."""
        future: Future = Future()
        with self._lock:
            if self.closed:
                future.set_exception(SessionStateError(self.ended_text()))
                return future
            self.last_command = time.monotonic()
            self._commands.put(("model", future))
        return future

    def close(self, reason: str | None = None) -> None:
        """Stop the run (`reason`: why, when the server stops it, for its page)."""
        with self._lock:
            if self.closed:
                return
            self.closed, self.ended = True, reason
        self._commands.put(("close", None))
        self._paintings.put(None)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def switch(self, switches: dict[str, bool]) -> None:
        """Turn inside views on or off (checked by `playground.inspection.parse_switches`)."""
        self.last_command = time.monotonic()
        self._commands.put(("view", dict(switches)))

    def _stopped(self) -> bool:
        """Asked before each training batch and each drawing slice."""
        return self.closed or self._abort

    def ended_text(self) -> str:
        return f"the run was stopped ({self.ended or 'its tab closed'}); press reset to start again"

    # -- the worker: owns the run, trains it ------------------------------------------------

    def _work(self) -> None:
        torch.set_grad_enabled(False)
        try:
            self._train_on_command()
        finally:
            with self._lock:  # closed: nothing more is queued; answer what is
                pending = []
                while not self._commands.empty():
                    pending.append(self._commands.get_nowait())
            for action, future in pending:
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_exception(SessionStateError(self.ended_text()))
            with contextlib.suppress(queue.Empty):  # frames queued after the painter's end
                while True:
                    self._paintings.get_nowait()
            self._paintings.put(None)  # (the painter's end, if it was among them)
            self.run = None  # its tensors go now, however long the server holds the session

    def _train_on_command(self) -> None:
        last_frame = next_epoch = time.perf_counter()
        epoch_seconds = 0.0  # the last epoch's, to know whether a frame follows the next
        while not self.closed:
            try:
                if self._pending is not None:  # taken by a frozen batch (one-step mode)
                    (action, future), self._pending = self._pending, None
                else:
                    action, future = self._commands.get(block=not self.playing)
            except queue.Empty:
                action, future = None, None
            if action == "close":
                break
            if action is not None:
                self._handle(action, future)
                continue
            now = time.perf_counter()  # playing: one epoch, paced by the epochs/s limit
            if now < next_epoch:
                time.sleep(next_epoch - now)
            next_epoch = max(next_epoch, now) + self.epoch_interval
            # The gradients are read only in an epoch after which a frame is due.
            if self.speed:
                due = (self.run.epoch + 1) % self.speed == 0
            else:
                due = now + epoch_seconds - last_frame >= self.frame_interval
            trained = self._train_epoch(armed=due)
            epoch_seconds = time.perf_counter() - now
            if self.speed:  # epochs per frame: every `speed`-th epoch is drawn, at most FPS a second
                if trained and self.run.epoch % self.speed == 0:
                    time.sleep(max(0.0, last_frame + self.frame_interval - time.perf_counter()))
                    self._publish()
                    last_frame = time.perf_counter()
                continue
            # A frame only when the painter is free: a fast network skips frames, not epochs.
            if trained and time.perf_counter() - last_frame >= self.frame_interval:
                if self._publish(wait=False):
                    last_frame = time.perf_counter()

    def _handle(self, action: str, future: Future | None) -> None:
        if action == "model":
            if not future.set_running_or_notify_cancel():  # the download was abandoned
                return
            try:
                future.set_result(self.run.model_bytes())
            except Exception as e:  # noqa: BLE001  (NNError: 409; anything else: the 500 says what)
                future.set_exception(e)
            return
        if action == "speed":
            self.speed = future  # (the command's argument)
            return
        if action == "probe":
            self._probe = self.run.probe = future  # (the command's argument)
            self._publish()
            return
        if action == "play":
            self.playing = self.error is None
        elif action == "pause":
            self.playing = False
        elif action == "step":
            self.playing = False
            self._train_epoch()
        elif action == "view":
            self._switch(future)
        elif action == "reset":
            self.playing, self.error = False, None
            self._idle.wait()  # the painter may still be drawing the old run
            self.run = Run(self.config, self.registry)  # the same seed: the same start
            self.run.probe = self._probe
            self._publish(setup=True)
            return
        self._publish()

    def _train_epoch(self, armed: bool = True) -> bool:
        if self.error is not None:
            return False
        self.run.inspection.watch.armed = armed
        try:
            try:
                if self.switches["onestep"]:  # frozen after each batch (self._frozen)
                    trained = self.run.train_epoch(self._stopped, after_step=self._frozen)
                else:
                    trained = self.run.train_epoch(self._stopped)
            finally:
                self._abort = False  # the next epoch runs
            if not trained:
                return False  # closed (or reset in one-step mode) mid-epoch
            if not math.isfinite(self.run.losses[-1]):
                raise SettingsError(
                    f"training diverged at epoch {self.run.epoch} (the loss is not finite); "
                    f"lower the learning rate (now {self.config.lr:g}) and reset"
                )
        except Exception as e:  # noqa: BLE001  (shown on the page; the worker lives on)
            self.error = str(e) if isinstance(e, NNError) else f"internal error: {type(e).__name__}: {e}"
            self.playing = False
            self._publish()
            return False
        return True

    def _publish(self, setup: bool = False, wait: bool = True) -> bool:
        """Hand the network as it is now to the painter; False if it is busy and `wait` is not."""
        if not self._idle.is_set():
            if not wait:
                return False
            self._idle.wait()
        self._idle.clear()
        self.run.inspection.options = dict(self.switches)
        self.run.sync_view()  # the painter draws this copy while training goes on
        self._paintings.put((self.run, setup, self.run.epoch, self.playing, self.error))
        return True

    # -- one-step mode: the worker waits between batches, inside fit ------------------------

    def _switch(self, switches: dict[str, bool]) -> None:
        """A playing run with one-step mode turned on freezes after its next batch."""
        self.switches.update(switches)

    def _frozen(self, batch: int, batches: int) -> None:
        """After each step in one-step mode: show the batch and wait for the next command.
        The epoch's last batch does not wait: the epoch ends, as `step` leaves it."""
        if batch == batches or not self.switches["onestep"]:
            return
        self.playing = False
        self._publish()
        while not self.closed:
            action, future = self._commands.get()
            if action in ("close", "step"):
                return
            if action == "play":  # training goes on as usual: one-step mode ends
                self.switches["onestep"], self.playing = False, True
                return
            if action == "view":
                self._switch(future)
                if not self.switches["onestep"]:
                    return  # the epoch goes on to its end, then waits there
                self._publish()
            elif action == "reset":  # the unfinished epoch is dropped, then the loop resets
                self._abort, self._pending = True, (action, future)
                return
            elif action in ("speed", "probe"):  # the training controls: as between epochs
                self._handle(action, future)
            elif action == "model" and future.set_running_or_notify_cancel():
                future.set_exception(SessionStateError(
                    f"the network is in the middle of epoch {self.run.epoch + 1} (one-step "
                    f"mode, batch {batch} of {batches}); step to the epoch's end or press "
                    f"play, then download"))
            # pause: already frozen

    # -- the painter: draws frames from the copy, on its own thread -------------------------

    def _painter(self) -> None:
        torch.set_grad_enabled(False)
        if sys.platform == "linux":  # Linux sets a thread's niceness by its thread id
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PAINTER_NICENESS)
        while (job := self._paintings.get()) is not None:
            try:
                if not self.closed:
                    self._paint(*job)
            finally:
                job = None  # the run's tensors are not kept alive by a finished job
                self._idle.set()

    def _paint(self, run: Run, setup: bool, epoch: int, playing: bool, error: str | None) -> None:
        setup_id, setup_text, _, _ = self.published
        if setup:
            self._setups += 1
            setup_id, setup_text = self._setups, _json(run.setup())
        frame = run.frame(epoch, self._stopped)
        if frame is None:  # the run ended while drawing
            return
        frame.update(setup=setup_id, playing=playing, error=error)
        self._frames += 1
        self.published = (setup_id, setup_text, self._frames, _json(frame))


def _check_arguments(specs) -> None:
    """No integer argument (a width, above all) past the width limit, before any weight."""
    for spec in specs:
        for key, value in spec.args.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > LIMITS["max_width"]:
                raise ConfigError(
                    f"{spec.name}:{key}={value} is too large; the playground takes at most "
                    f"{LIMITS['max_width']}"
                )


class _Stopped(Exception):
    """The run ended while a frame was being drawn."""


def _check_memory(run: Run, in_features: int, out_features: int) -> None:
    """Refuse a run whose activations, weights and data would pass the memory limit."""
    c = run.config
    need = run_bytes(
        run.per_row, batch=min(c.batch, len(run.data.x_train)), cells=c.grid ** 2,
        parameters=sum(p.value.numel() for p in run.model.parameters()),
        points=max(c.size, len(run.raw.x_train) + len(run.raw.x_test)),  # a fixed table's own
        in_features=in_features, out_features=out_features,
        element=run.data.x_train.element_size(),
    )
    limit = LIMITS["max_run_megabytes"] * 2**20
    if need > limit:
        raise ConfigError(
            f"this run would hold about {need / 2**20:.0f} MB ({run.per_row} numbers per "
            f"row through {len(getattr(run.view, 'modules', [1]))} layers, batches of "
            f"{c.batch}); the playground takes at most {LIMITS['max_run_megabytes']} MB a run: "
            f"use fewer or narrower layers or a smaller batch"
        )


def _check_size(model) -> None:
    count = sum(p.value.numel() for p in model.parameters())
    if count > LIMITS["max_parameters"]:
        raise ConfigError(
            f"the network has {count} weights; the playground trains at most "
            f"{LIMITS['max_parameters']}"
        )
    widths = [getattr(m, "out_features", 0) for m in model.modules]
    if max(widths, default=0) > LIMITS["max_width"]:
        raise ConfigError(
            f"layers may be at most {LIMITS['max_width']} wide, got {max(widths)}"
        )


def _domain(x: torch.Tensor) -> list[float]:
    """[x0, x1, y0, y1]: the square around the points, with a margin."""
    low, high = x.double().min(dim=0).values, x.double().max(dim=0).values  # (2,)
    centre, half = (low + high) / 2, (high - low).max().item() / 2 * 1.1 or 1.0
    return [centre[0].item() - half, centre[0].item() + half,
            centre[1].item() - half, centre[1].item() + half]


def _grid(domain: list[float], n: int, preprocessing: dict, dtype: torch.dtype) -> torch.Tensor:
    """Cell centres, row 0 at the top (largest y), preprocessed: (n * n, 2)."""
    from core.data import preprocess

    x0, x1, y0, y1 = domain
    step_x, step_y = (x1 - x0) / n, (y1 - y0) / n
    xs = torch.arange(n, dtype=torch.float64) * step_x + x0 + step_x / 2  # (n,)
    ys = y1 - step_y / 2 - torch.arange(n, dtype=torch.float64) * step_y  # (n,)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (n, n) each
    cells = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(dtype)  # (n * n, 2)
    return preprocess.apply(preprocessing, cells)


def _points(x: torch.Tensor, labels: torch.Tensor) -> dict[str, list]:
    return {"x": [round(v, 5) for v in x[:, 0].tolist()],
            "y": [round(v, 5) for v in x[:, 1].tolist()],
            "label": [int(v) for v in labels.reshape(-1).tolist()]}


def _json(value: Any) -> str:
    """JSON text a browser parses: a number that is not finite (a diverged loss) is null."""
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _b64(values: torch.Tensor) -> str:
    return base64.b64encode(values.contiguous().numpy().tobytes()).decode("ascii")
