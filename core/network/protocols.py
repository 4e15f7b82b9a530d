"""The three contracts a component can fulfil: Module, Loss and Initializer.

They are structural (`typing.Protocol`): a plugin satisfies one by having the methods,
without inheriting from anything here.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is only needed for annotations here
    import torch


@dataclass(eq=False)
class Parameter:
    """A trainable tensor and the gradient that `backward` accumulates into it.

    Read both through the Parameter (`self.weight.value`) at each step rather than keeping
    views of them: an optimizer may move the tensors into one shared buffer (core/training/flat.py),
    keeping the same tensor objects, shapes and values.
    """

    value: torch.Tensor  # the weights themselves, updated in place by the optimizer
    grad: torch.Tensor  # same shape; backward adds to it, zero_grad clears it
    name: str = field(default="")  # for messages and saved files, e.g. "weight"

    @classmethod
    def of(cls, value: torch.Tensor, name: str = "") -> Parameter:
        return cls(value, value.new_zeros(value.shape), name)


@runtime_checkable
class Module(Protocol):
    """A differentiable function with hand-written backward.

    `forward(x)` computes the output and caches what `backward` needs.
    `backward(grad_output)` returns the gradient with respect to the input of the last
    `forward`, and *adds* the gradients of its parameters into `Parameter.grad`.
    `parameters()` lists the trainable parameters (empty for activations).

    Two more methods are optional; a module without them has one mode and no state, and
    the helpers below (`set_training`, `buffers`) treat it so:

    `train(mode: bool = True)` switches between training (True, the mode a module starts
    in) and evaluation (False): dropout is off and batchnorm uses its running statistics
    in evaluation. The training loop switches to training before each epoch; errors,
    `evaluate` and `predict` run in evaluation. A module with modes keeps the current one
    in a `training` attribute.

    `buffers() -> dict[str, torch.Tensor]` names the non-trainable state (running mean and
    variance) that model files and checkpoints save and load. The module updates these
    tensors in place, never rebinding them, so loading can copy into them; with a leading
    run dimension each buffer has one too.

    A module whose input gradient costs work of its own (a convolution's col2im) may take
    a `needs_input_grad` attribute, True to start: when its owner sets it False, `backward`
    still adds the parameter gradients but may skip the input gradient and return None.
    Sequential does so for its first module with parameters when nobody reads its own
    input gradient (`no_input_grad(network)`, as the training loop does).

    A module that draws random numbers while training (dropout) keeps the generator the
    assembler gave it in `generator`; built with `runs`, it keeps one per run in a list
    `generators`, which the ensemble sets to the generators of the runs' own networks.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> list[Parameter]: ...


@runtime_checkable
class Loss(Protocol):
    """A scalar objective on the network's output.

    `forward(prediction, target)` returns a 0-dim tensor, averaged over the batch (with a
    leading run dimension, a loss that declares `supports_runs` returns one mean per run).
    `backward()` returns d loss / d prediction for the last `forward`.
    A loss may set `decision_threshold` (default 0.5): the output value above which a
    prediction counts as class 1 (0.0 for losses that take logits).
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    def backward(self) -> torch.Tensor: ...


@runtime_checkable
class Initializer(Protocol):
    """Fills `weight` in place from its fan-in, fan-out and a seeded generator.

    Any callable with this signature qualifies, so a plain function is an initializer.
    """

    def __call__(
        self, weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator
    ) -> None: ...


def composite(factory):
    """Mark a layer factory that returns a stack text of registered layers instead of a module
    (`transformer_block`): the assembler builds that text in its place, for the shape it gets.
    Register it as a layer like any other."""
    factory.composite = True
    return factory


def param(module: Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The report's `param()`: a list of (tensor, gradient) pairs."""
    return [(p.value, p.grad) for p in module.parameters()]


def zero_grad(module: Module) -> None:
    """Clear every accumulated parameter gradient of `module`."""
    for p in module.parameters():
        p.grad.zero_()


def set_training(module: Module, mode: bool) -> None:
    """Switch `module` to training (True) or evaluation (False), if it has modes."""
    switch = getattr(module, "train", None)
    if callable(switch):
        switch(mode)


def is_training(module: Module) -> bool:
    """The module's mode: its `training` attribute, True for a module without modes."""
    return bool(getattr(module, "training", True))


@contextmanager
def evaluating(module: Module):
    """Evaluation mode for the block, then back to the mode the module was in."""
    before = is_training(module)
    set_training(module, False)
    try:
        yield module
    finally:
        set_training(module, before)


@contextmanager
def no_input_grad(module: Module):
    """For the block, `module.backward` may skip its input gradient and return None.

    Only for a module that takes the optional `needs_input_grad` (Sequential, conv2d,
    linear); others are left as they are. The value before the block comes back after it.
    """
    if not hasattr(module, "needs_input_grad"):
        yield module
        return
    before = module.needs_input_grad
    module.needs_input_grad = False
    try:
        yield module
    finally:
        module.needs_input_grad = before


def buffers(module: Module) -> dict[str, torch.Tensor]:
    """The module's non-trainable state by name ({} for a module without `buffers`)."""
    named = getattr(module, "buffers", None)
    return dict(named()) if callable(named) else {}


def decision_threshold(loss: Loss) -> float:
    """The output value above which a prediction is class 1 for this loss."""
    return float(getattr(loss, "decision_threshold", 0.5))


@runtime_checkable
class Optimizer(Protocol):
    """Updates parameters from their accumulated gradients.

    Built by `factory(parameters, lr=..., **options)`. `step()` applies one update;
    `zero_grad()` clears the gradients before the next backward. Optionally,
    `state_dict()` returns its state as a plain dict of tensors and numbers and
    `load_state_dict(state)` restores it; checkpoints (`--checkpoint-every`) need both.
    The training loop may set the `lr` attribute before an epoch (a learning-rate
    schedule), so `step()` reads it.
    """

    def step(self) -> None: ...

    def zero_grad(self) -> None: ...
