"""Optimizers. They, not the layers, update the parameters.

The update rules follow PyTorch's documented SGD and Adam algorithms step for step, so
that the same network trained with either ends with the same weights.
"""

from __future__ import annotations

from core import Parameter, SettingsError, StateError, hookimpl
from core.training.flat import pack, unpack
from core.lazy import torch  # imported on first use: listing plugins stays fast


class _Optimizer:
    # Element-wise updates: parameters with a leading run dimension train as one ensemble.
    supports_runs = True

    def __init__(self, parameters: list[Parameter], lr: float):
        if not lr > 0:
            raise SettingsError(f"learning rate must be > 0, got {lr}")
        self.parameters, self.lr = list(parameters), lr
        values = [p.value for p in self.parameters]
        grads = [p.grad for p in self.parameters]
        # Every value in one buffer and every gradient in another (core.training.flat), so that each
        # update below is one op over all parameters. Where they can't share a buffer (mixed
        # dtypes, or a tensor that is a view of another), the same torch._foreach_* ops run
        # over the tensors one by one.
        flat_values = pack(values)
        flat_grads = None if flat_values is None else pack(grads)
        self.packed = flat_grads is not None
        self.values, self.grads = ([flat_values], [flat_grads]) if self.packed else (values, grads)

    def zero_grad(self) -> None:
        if self.grads:
            torch._foreach_zero_(self.grads)

    def per_parameter(self, buffers: list[torch.Tensor]) -> list[torch.Tensor]:
        """State kept like `self.values` (maybe packed), as one tensor per parameter (views)."""
        return unpack(buffers[0], [p.value for p in self.parameters]) if self.packed else buffers

    def like_values(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """One tensor per parameter, kept like `self.values` (packed into one if they are)."""
        tensors = [t.to(p.value).clone() for t, p in zip(tensors, self.parameters)]
        return [torch.cat([t.reshape(-1) for t in tensors])] if self.packed else tensors


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
        self.velocity: list[torch.Tensor] | None = None  # like self.values, from the first step

    def step(self) -> None:
        if not self.values:
            return
        grads = self.grads
        if self.weight_decay:  # g + wd * w, as PyTorch's SGD adds it
            grads = torch._foreach_add(grads, self.values, alpha=self.weight_decay)
        if self.momentum:
            if self.velocity is None:  # the first step starts the velocity at the gradient
                self.velocity = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.velocity, self.momentum)
                torch._foreach_add_(self.velocity, grads)
            if self.nesterov:  # g + momentum * v
                grads = torch._foreach_add(grads, self.velocity, alpha=self.momentum)
            else:
                grads = self.velocity
        # NOTE: value - lr * g in one fused op, no temporary: the arithmetic of
        # PyTorch's SGD's own `param.add_(grad, alpha=-lr)`.
        torch._foreach_add_(self.values, grads, alpha=-self.lr)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The velocities once started (at the first step), as "velocity.{i}" (i: parameter)."""
        if self.velocity is None:
            return {}
        return {f"velocity.{i}": v for i, v in enumerate(self.per_parameter(self.velocity))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        velocity: list[torch.Tensor | None] = [None] * len(self.parameters)
        for key, value in state.items():
            velocity[_index(key, "velocity", self.parameters, value)] = value
        if state and None in velocity:  # all start at the first step, or none has
            raise StateError(
                f"SGD state needs every velocity.0 .. velocity.{len(velocity) - 1} or none, "
                f"got {sorted(state)}"
            )
        self.velocity = self.like_values(velocity) if state else None


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
        self.mean = [torch.zeros_like(v) for v in self.values]  # first moment, like values
        self.square = [torch.zeros_like(v) for v in self.values]  # second moment

    def step(self) -> None:
        if not self.values:
            return
        self.steps += 1
        correction1 = 1 - self.beta1**self.steps
        correction2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        grads = self.grads
        if self.weight_decay:  # L2: g + wd * w
            grads = torch._foreach_add(grads, self.values, alpha=self.weight_decay)
        # m = beta1 m + (1 - beta1) g;  s = beta2 s + (1 - beta2) g^2
        torch._foreach_mul_(self.mean, self.beta1)
        torch._foreach_add_(self.mean, grads, alpha=1 - self.beta1)
        torch._foreach_mul_(self.square, self.beta2)
        torch._foreach_addcmul_(self.square, grads, grads, value=1 - self.beta2)
        # w -= lr / c1 * m / (sqrt(s) / sqrt(c2) + eps), as PyTorch's Adam computes it
        denominator = torch._foreach_sqrt(self.square)
        torch._foreach_div_(denominator, correction2_sqrt)
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_addcdiv_(self.values, self.mean, denominator, value=-self.lr / correction1)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The step count and both moments, as "mean.{i}" and "square.{i}" (i: parameter)."""
        state: dict[str, torch.Tensor | int] = {"steps": self.steps}
        moments = zip(self.per_parameter(self.mean), self.per_parameter(self.square))
        for i, (m, s) in enumerate(moments):
            state[f"mean.{i}"], state[f"square.{i}"] = m, s
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        n = len(self.parameters)
        expected = {"steps"} | {f"{b}.{i}" for b in ("mean", "square") for i in range(n)}
        if state.keys() != expected:
            raise StateError(f"Adam state needs keys {sorted(expected)}, got {sorted(state)}")
        steps = state["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise StateError(f"Adam state 'steps' must be an integer >= 0, got {steps!r}")
        for key, value in state.items():
            if key != "steps":
                _index(key, key.partition(".")[0], self.parameters, value)  # checks the shape
        self.mean, self.square = (self.like_values([state[f"{b}.{i}"] for i in range(n)])
                                  for b in ("mean", "square"))
        self.steps = steps


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): w -= lr * wd * w, then Adam's step."""

    def __init__(
        self,
        parameters: list[Parameter],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        super().__init__(parameters, lr, beta1, beta2, eps)
        self.decay = weight_decay  # not Adam's L2 term: the weights shrink, the gradients do not

    def step(self) -> None:
        if self.values and self.decay:  # as PyTorch's AdamW: param.mul_(1 - lr * wd) first
            torch._foreach_mul_(self.values, 1 - self.lr * self.decay)
        super().step()


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
    register("adamw", AdamW)
