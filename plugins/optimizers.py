"""Optimizers. They, not the layers, update the parameters.

The update rules follow PyTorch's documented SGD and Adam algorithms step for step, so
that the same network trained with either ends with the same weights.
"""

from __future__ import annotations

from core import Parameter, SettingsError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class _Optimizer:
    # Element-wise updates: parameters with a leading run dimension train as one ensemble.
    supports_runs = True

    def __init__(self, parameters: list[Parameter], lr: float):
        if not lr > 0:
            raise SettingsError(f"learning rate must be > 0, got {lr}")
        self.parameters, self.lr = list(parameters), lr
        # The tensors themselves, for updates over all of them in one op (torch._foreach_*):
        # modules update values and gradients in place and never rebind them.
        self.values = [p.value for p in self.parameters]
        self.grads = [p.grad for p in self.parameters]

    def zero_grad(self) -> None:
        if self.grads:
            torch._foreach_zero_(self.grads)


class SGD(_Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov and weight decay."""

    def __init__(
        self,
        parameters: list[Parameter],
        lr: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(parameters, lr)
        if nesterov and momentum <= 0:
            raise SettingsError(f"nesterov needs momentum > 0, got momentum={momentum}")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity: list[torch.Tensor | None] = [None] * len(self.parameters)

    def step(self) -> None:
        if not (self.weight_decay or self.momentum):  # plain SGD: one op for all tensors
            # NOTE: value - lr * grad in one fused op, no temporary: the arithmetic of
            # torch.optim.SGD's own `param.add_(grad, alpha=-lr)`.
            if self.values:
                torch._foreach_add_(self.values, self.grads, alpha=-self.lr)
            return
        for i, p in enumerate(self.parameters):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.value
            if self.momentum:
                v = self.velocity[i]
                if v is None:  # the first step starts the velocity at the gradient itself
                    v = self.velocity[i] = g.clone()
                else:
                    v.mul_(self.momentum).add_(g)
                g = g + self.momentum * v if self.nesterov else v
            p.value.sub_(self.lr * g)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The velocity buffers started so far, as "velocity.{i}" (i: parameter index)."""
        return {f"velocity.{i}": v for i, v in enumerate(self.velocity) if v is not None}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.velocity = [None] * len(self.parameters)
        for key, value in state.items():
            i = _index(key, "velocity", self.parameters, value)
            self.velocity[i] = value.to(self.parameters[i].value).clone()


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and optional L2 weight decay."""

    def __init__(
        self,
        parameters: list[Parameter],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(parameters, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.steps = 0
        self.mean = [torch.zeros_like(p.value) for p in self.parameters]
        self.square = [torch.zeros_like(p.value) for p in self.parameters]

    def step(self) -> None:
        self.steps += 1
        correction1 = 1 - self.beta1**self.steps
        correction2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        for p, m, s in zip(self.parameters, self.mean, self.square):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.value
            m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
            s.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denominator = (s.sqrt() / correction2_sqrt).add_(self.eps)
            p.value.addcdiv_(m, denominator, value=-self.lr / correction1)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The step count and both moments, as "mean.{i}" and "square.{i}"."""
        state: dict[str, torch.Tensor | int] = {"steps": self.steps}
        for i, (m, s) in enumerate(zip(self.mean, self.square)):
            state[f"mean.{i}"], state[f"square.{i}"] = m, s
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        expected = {"steps"} | {f"{b}.{i}" for b in ("mean", "square") for i in range(len(self.mean))}
        if state.keys() != expected:
            raise StateError(f"Adam state needs keys {sorted(expected)}, got {sorted(state)}")
        steps = state["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise StateError(f"Adam state 'steps' must be an integer >= 0, got {steps!r}")
        for key, value in state.items():
            if key != "steps":
                buffer, _ = key.split(".")
                i = _index(key, buffer, self.parameters, value)
                getattr(self, buffer)[i].copy_(value)
        self.steps = steps


def _index(key: str, buffer: str, parameters: list[Parameter], value: object) -> int:
    """i of "{buffer}.{i}", checked against the parameters: their count and shapes."""
    prefix, _, index = key.partition(".")
    if prefix != buffer or not index.isdigit() or int(index) >= len(parameters):
        raise StateError(
            f"unexpected optimizer state {key!r}; expected {buffer}.0 .. {buffer}.{len(parameters) - 1}"
        )
    i = int(index)
    if not isinstance(value, torch.Tensor) or value.shape != parameters[i].value.shape:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise StateError(
            f"optimizer state {key!r} has shape {shape}; parameter {i} has "
            f"{list(parameters[i].value.shape)}"
        )
    return i


@hookimpl
def register_optimizers(register):
    register("sgd", SGD)
    register("adam", Adam)
