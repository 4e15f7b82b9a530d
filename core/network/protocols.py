"""The three contracts a component can fulfil: Module, Loss and Initializer.

They are structural (`typing.Protocol`): a plugin satisfies one by having the methods,
without inheriting from anything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is only needed for annotations here
    import torch


@dataclass(eq=False)
class Parameter:
    """A trainable tensor and the gradient that `backward` accumulates into it.

    Read both through the Parameter (`self.weight.value`) at each step rather than keeping
    views of them: an optimizer may move the tensors into one shared buffer (core/flat.py),
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


def param(module: Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The report's `param()`: a list of (tensor, gradient) pairs."""
    return [(p.value, p.grad) for p in module.parameters()]


def zero_grad(module: Module) -> None:
    """Clear every accumulated parameter gradient of `module`."""
    for p in module.parameters():
        p.grad.zero_()


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
