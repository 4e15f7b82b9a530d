"""Optimizers. They, not the layers, update the parameters.

The update rules follow torch.optim's documented algorithms step for step, so that the
same network trained with either ends with the same weights.
"""

from __future__ import annotations

import torch

from core import Parameter, SettingsError, hookimpl


class _Optimizer:
    # Element-wise updates: parameters with a leading run dimension train as one ensemble.
    supports_runs = True

    def __init__(self, parameters: list[Parameter], lr: float):
        if not lr > 0:
            raise SettingsError(f"learning rate must be > 0, got {lr}")
        self.parameters, self.lr = list(parameters), lr
        # Every gradient moves into one flat buffer, each Parameter.grad a view of it, so
        # zero_grad is one op; `scaled` is the buffer that a plain SGD step reuses.
        self.grad = gather_gradients(self.parameters)  # (total,)
        self.scaled = torch.empty_like(self.grad)  # (total,)
        self.values = [p.value for p in self.parameters]  # updated in place, one op for all
        self.scaled_views = views_like(self.scaled, self.values)

    def zero_grad(self) -> None:
        self.grad.zero_()


def gather_gradients(parameters: list[Parameter]) -> torch.Tensor:
    """One flat tensor holding every gradient; each `Parameter.grad` becomes a view of it.

    Backward adds into `Parameter.grad` in place, so the views receive the gradients.
    """
    if len({(p.grad.dtype, p.grad.device) for p in parameters}) > 1:
        raise SettingsError("an optimizer's parameters must share one dtype and device")
    if not parameters:
        return torch.zeros(0)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])  # (total,)
    for p, view in zip(parameters, views_like(flat, [p.grad for p in parameters])):
        p.grad = view
    return flat


def views_like(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of `flat` shaped like `tensors`."""
    sizes = [t.numel() for t in tensors]
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), tensors)]


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
        if not (self.weight_decay or self.momentum):  # plain SGD: two ops for all tensors
            # NOTE: lr * g, then subtract: rounds exactly as the loop below does.
            torch.mul(self.grad, self.lr, out=self.scaled)
            torch._foreach_sub_(self.values, self.scaled_views)
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


@hookimpl
def register_optimizers(register):
    register("sgd", SGD)
    register("adam", Adam)
