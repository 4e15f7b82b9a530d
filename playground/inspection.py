"""Inside the network: what the page's diagram, gradient chart and one-step view draw.

Three things, each read from the framework's own modules, never recomputed:

- `StepWatch` stands in for the run's optimizer inside `fit` (it passes every call through,
  so training is unchanged, bit for bit): at the epoch's last step, or at every step in
  one-step mode, it reads each layer's parameter gradients (the hand-written backward's,
  as the step used them) and the step's update, ||W_after - W_before|| / ||W_before||.
- `Taps` wrap the network's modules while one-step mode is on and keep the gradient each
  module's own `backward` was handed: d loss / d (module output), layer by layer from the
  loss back to the first layer.
- `diagram` runs the painter's copy of the network over a small grid of the input plane
  and returns every shown unit's activation there, with the weights and biases between.

A "layer" of the diagram is a module with parameters and the parameter-free modules after
it (linear, then its activation): its units are the last one's outputs.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import torch

UNITS_SHOWN = 8  # units drawn per layer; the rest of a wider layer is counted, not drawn
UNIT_CELLS = 24  # each unit's heat map is UNIT_CELLS x UNIT_CELLS over the input plane
VIEW_SWITCHES = ("diagram", "onestep")  # what the page changes without restarting the run


# -- the backward pass, read after each step ------------------------------------------------


@dataclass
class StepRecord:
    """What one training step did, layer by layer (layers with parameters, in order)."""

    epoch: float  # when: the epoch and the fraction of the next one done (2.5: mid-epoch 3)
    grad_norm: list[float]  # ||d loss / d parameters|| of each layer, the batch's mean
    update_ratio: list[float]  # ||W_after - W_before|| / ||W_before|| of each layer
    flow: list[dict[str, Any]] = field(default_factory=list)  # one-step mode: Taps.flow()


class StepWatch:
    """The run's optimizer, passed through unchanged, watching the steps it takes.

    `fit` calls only `zero_grad`, `step` and sets `lr`; everything else reaches the
    optimizer itself. `every` (one-step mode) records each step and calls `after_step`
    (batch, batches) once the step is taken; otherwise only the epoch's last step is read,
    and only when `armed`: a playing run arms the epochs after which a frame is due, so
    that the epochs between frames cost what `fit`'s alone cost.
    """

    def __init__(self, optimizer, layers: list, steps_per_epoch: int):
        object.__setattr__(self, "optimizer", optimizer)
        self.layers = layers
        self.groups = [len(m.parameters()) for m in layers]  # parameters per layer
        self.steps = steps_per_epoch
        self.batch = 0  # steps taken in the epoch under way
        self.epochs_done = 0
        self.every = False
        self.armed = True
        self.after_step = None
        self.taps: Taps | None = None
        self.record: StepRecord | None = None  # the latest step read

    def __getattr__(self, name: str):  # anything fit does not call: the optimizer's own
        return getattr(self.optimizer, name)

    def __setattr__(self, name: str, value) -> None:
        if name == "lr":  # a schedule sets the rate on the optimizer itself
            setattr(self.optimizer, name, value)
        else:
            object.__setattr__(self, name, value)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.batch += 1
        if not (self.every or (self.armed and self.batch == self.steps)):
            self.optimizer.step()  # a step nobody reads: nothing else
            return
        values = [p.value for m in self.layers for p in m.parameters()]
        before = [v.clone() for v in values]
        self.optimizer.step()
        self.record = self._read(values, before)
        if self.after_step is not None:
            self.after_step(self.batch, self.steps)

    def _read(self, values: list[torch.Tensor], before: list[torch.Tensor]) -> StepRecord:
        grads = [p.grad for m in self.layers for p in m.parameters()]
        if not grads:
            return StepRecord(self.epochs_done + self.batch / self.steps, [], [])
        squares = torch.stack([  # (3, parameters): gradient, update and weight norms squared
            torch.stack(torch._foreach_norm(grads)),
            torch.stack(torch._foreach_norm(torch._foreach_sub(values, before))),
            torch.stack(torch._foreach_norm(before)),
        ]).double().square().tolist()
        grad, update, weight = ([math.sqrt(sum(row[i:i + n])) for i, n in self._spans()]
                                for row in squares)
        ratio = [u / w if w > 0 else (0.0 if u == 0 else math.inf) for u, w in zip(update, weight)]
        flow = self.taps.flow() if self.taps is not None else []
        return StepRecord(self.epochs_done + self.batch / self.steps, grad, ratio, flow)

    def _spans(self):
        start = 0
        for n in self.groups:
            yield start, n
            start += n


class Tap:
    """One module, passed through unchanged, keeping the gradient its backward was handed."""

    def __init__(self, module):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "grad_output", None)

    def __getattr__(self, name: str):
        return getattr(self.module, name)

    def __setattr__(self, name: str, value) -> None:  # needs_input_grad, training: the module's
        setattr(self.module, name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward(x)

    def backward(self, grad_output: torch.Tensor):
        object.__setattr__(self, "grad_output", grad_output)
        return self.module.backward(grad_output)

    def parameters(self):
        return self.module.parameters()

    __call__ = forward


class Taps:
    """Taps on every module of a Sequential network while the block runs, then the modules
    back as they were."""

    def __init__(self, network, names: list[str]):
        self.network, self.names = network, names
        self.taps: list[Tap] = []

    def __enter__(self) -> Taps:
        self.taps = [Tap(m) for m in self.network.modules]
        self.network.modules = list(self.taps)
        return self

    def __exit__(self, *exc) -> None:
        self.network.modules = [tap.module for tap in self.taps]

    def flow(self) -> list[dict[str, Any]]:
        """d loss / d (each module's output) for the last batch, from the loss back to the
        first module: its norm over the batch, and each shown unit's mean over the batch."""
        found = []
        for index, name, tap in reversed(list(zip(range(len(self.taps)), self.names, self.taps))):
            g = tap.grad_output
            if g is None:  # a module backward never reached
                continue
            if g.dim() != 2:  # an image's (channels, height, width) in some layout: the norm
                found.append({"name": name, "module": index, "units": None,
                              "norm": g.double().norm().item(), "mean": [], "rms": []})
                continue
            per_unit = g.double()  # (batch, units)
            found.append({
                "name": name, "module": index, "units": per_unit.shape[-1],
                "norm": per_unit.norm().item(),
                "mean": per_unit[:, :UNITS_SHOWN].mean(0).tolist(),
                "rms": per_unit[:, :UNITS_SHOWN].square().mean(0).sqrt().tolist(),
            })
        return found


# -- the diagram ----------------------------------------------------------------------------


def module_names(network, specs) -> list[str]:
    """Each module's name: its layer text's (linear, tanh) where the two line up, else its class."""
    modules = getattr(network, "modules", [])
    if len(specs) == len(modules):
        return [spec.name for spec in specs]
    return [type(m).__name__.lower() for m in modules]


def layer_groups(network) -> list[list[int]]:
    """Module indices of each diagram layer: one with parameters, then those without."""
    groups: list[list[int]] = []
    for i, module in enumerate(getattr(network, "modules", [])):
        if module.parameters():
            groups.append([i])
        elif groups:
            groups[-1].append(i)
    return groups


def parametric_layers(network) -> list:
    return [m for m in getattr(network, "modules", []) if m.parameters()]


def plane_grid(domain: list[float], preprocessing: dict, dtype: torch.dtype) -> torch.Tensor:
    """The units' heat map cells over the plotted square, row 0 at the top: (cells ** 2, 2)."""
    from playground.session import _grid

    return _grid(domain, UNIT_CELLS, preprocessing, dtype)


def diagram(network, names: list[str], plane: torch.Tensor) -> dict[str, Any]:
    """Every layer's shown units over the input plane, and the weights between them.

    Each layer's maps are scaled by the largest |activation| in it (`scale`), so units of
    one layer compare; `low`/`high` are each unit's own range over the plane.
    """
    outputs = network.outputs(plane)  # each module's output, (cells, units)
    layers = [_unit_layer("input", plane, None)]
    for group in layer_groups(network):
        module = network.modules[group[0]]
        out = outputs[group[-1]]
        if out.dim() != 2:  # images inside (a convolution): no unit is a plane's picture
            return {"cells": UNIT_CELLS, "layers": None}
        name = " + ".join(names[i] for i in group)
        layers.append(_unit_layer(name, out, module))
    return {"cells": UNIT_CELLS, "layers": layers}


def _unit_layer(name: str, out: torch.Tensor, module) -> dict[str, Any]:
    shown = out[:, :UNITS_SHOWN].double()  # (cells, shown)
    scale = shown.abs().max().item() or 1.0
    codes = ((shown / scale + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # -scale..scale
    layer = {
        "name": name, "units": out.shape[-1], "scale": scale,
        "maps": base64.b64encode(codes.T.contiguous().numpy().tobytes()).decode("ascii"),
        "low": shown.min(0).values.tolist(), "high": shown.max(0).values.tolist(),
        "weights": None, "bias": None,
    }
    if module is not None:
        named = {p.name: p.value for p in module.parameters()}
        weight, bias = named.get("weight"), named.get("bias")
        if weight is not None and weight.dim() == 2:  # (in, out): x @ W
            layer["weights"] = weight[:UNITS_SHOWN, :UNITS_SHOWN].double().tolist()
        if bias is not None and bias.dim() == 1:
            layer["bias"] = bias[:UNITS_SHOWN].double().tolist()
    return layer


# -- what a frame carries -------------------------------------------------------------------


class Inspection:
    """One run's inside view: the watch on its optimizer, and what its frames show."""

    def __init__(self, run):
        model = run.model
        self.names = module_names(model, run.specs)
        self.layers = parametric_layers(model)
        self.layer_names = [f"{' + '.join(self.names[i] for i in g)} {k + 1}"
                            for k, g in enumerate(layer_groups(model))]
        steps = math.ceil(run.data.x_train.shape[0] / run.config.batch)
        self.watch = StepWatch(run.optimizer, self.layers, steps)
        self.model = model
        two_d = tuple(run.data.x_train.shape[1:]) == (2,) and hasattr(model, "modules")
        self.plane = (plane_grid(run.domain, run.data.preprocessing, run.data.x_train.dtype)
                      if two_d else None)
        self.options = {"diagram": True, "onestep": False}  # set by the session
        self.shown: StepRecord | None = None  # the record the painter's copy stands at

    def taps(self) -> Taps:
        return Taps(self.model, self.names)

    def sync(self) -> None:
        """With the weights' copy: the latest step record is what the next frame shows."""
        self.shown = self.watch.record

    def frame(self, view) -> dict[str, Any]:
        """The frame's inside parts, drawn from the painter's copy `view`."""
        r = self.shown
        parts: dict[str, Any] = {
            "view": dict(self.options),
            "gradients": None if r is None else {
                "at": r.epoch, "layers": self.layer_names,
                "grad_norm": r.grad_norm, "update_ratio": r.update_ratio,
            },
            "onestep": None,
        }
        if self.options["onestep"] and r is not None and r.flow:
            parts["onestep"] = {"at": r.epoch, "batches": self.watch.steps, "flow": r.flow}
        if self.options["diagram"]:
            parts["diagram"] = (diagram(view, self.names, self.plane) if self.plane is not None
                                else {"cells": UNIT_CELLS, "layers": None})
            if parts["onestep"] and parts["diagram"]["layers"]:  # each unit's own gradient
                by_module = {f["module"]: f["mean"] for f in r.flow}
                for layer, group in zip(parts["diagram"]["layers"][1:], layer_groups(self.model)):
                    layer["grad"] = by_module.get(group[-1])
        return parts


def parse_switches(body: Any) -> dict[str, bool]:
    """A request to switch inside views: {"diagram": true, "onestep": false}, either or both."""
    from playground.config import ConfigError, parse_switch

    if not isinstance(body, dict) or not body or set(body) - set(VIEW_SWITCHES):
        unknown = sorted(set(body) - set(VIEW_SWITCHES)) if isinstance(body, dict) else []
        what = f"unknown view {unknown[0]!r}" if unknown else "the body must name a view"
        raise ConfigError(f"{what}; send {{\"diagram\": true | false, \"onestep\": true | false}}"
                          f" (either or both)")
    return {key: parse_switch(key, value) for key, value in body.items()}
