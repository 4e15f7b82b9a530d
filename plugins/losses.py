"""Losses on the network's raw output, averaged over the batch.

A prediction may carry a leading run dimension, (runs, batch, out): each run then gets its
own mean, over its batch, and its own gradient, exactly as if trained alone.

`tasks` says which datasets a loss fits (core.data: "binary", "multiclass", "regression";
a loss without it fits "binary" only). A classification loss with a `decision_threshold`
trains one output per point on a binary task; one without it trains one output per class
on one-hot targets, and the class is the largest output.
"""

from __future__ import annotations

from core import ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


def two_columns(p: torch.Tensor) -> torch.Tensor:
    """(n, 1) probabilities of class 1 -> (n, 2): one column per class."""
    return torch.cat([1 - p, p], dim=-1)


def batch_elements(prediction: torch.Tensor) -> int:
    """How many elements one run's mean is over: batch * out."""
    return prediction.shape[-2] * prediction.shape[-1]


class MSELoss:
    """Mean squared error between output and 0/1 target; class 1 above 0.5."""

    decision_threshold = 0.5
    supports_runs = True
    tasks = ("binary", "multiclass", "regression")

    def __init__(self) -> None:
        self.diff: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.diff = prediction - target  # (batch, out)
        return (self.diff * self.diff).mean(dim=(-2, -1))  # () or (runs,)

    def backward(self) -> torch.Tensor:
        if self.diff is None:
            raise StateError("MSELoss.backward called before forward")
        return self.diff * (2.0 / batch_elements(self.diff))

    @staticmethod
    def probabilities(scores: torch.Tensor) -> torch.Tensor:
        """(n, classes): the outputs clipped to [0, 1] (one output: class 1's), rows summing to 1."""
        if scores.shape[-1] == 1:
            return two_columns(scores.clamp(0, 1))
        clipped = scores.clamp(min=0)  # (n, classes)
        total = clipped.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(clipped, 1 / clipped.shape[-1])
        return torch.where(total > 0, clipped / total.clamp(min=1e-300), uniform)


class BCEWithLogitsLoss:
    """Binary cross-entropy on the logit (stable for any logit); class 1 above 0."""

    decision_threshold = 0.0
    supports_runs = True
    tasks = ("binary",)

    def __init__(self) -> None:
        self.logit: torch.Tensor | None = None
        self.target: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.logit, self.target = prediction, target
        # NOTE: -[y log s(x) + (1-y) log(1-s(x))] = max(x,0) - x y + log(1 + exp(-|x|));
        # the right side never takes the log of a rounded-off 0 nor overflows exp.
        per_element = prediction.clamp(min=0) - prediction * target + torch.log1p(
            torch.exp(-prediction.abs())
        )
        return per_element.mean(dim=(-2, -1))  # () or (runs,)

    def backward(self) -> torch.Tensor:
        if self.logit is None or self.target is None:
            raise StateError("BCEWithLogitsLoss.backward called before forward")
        return (torch.sigmoid(self.logit) - self.target) / batch_elements(self.logit)

    @staticmethod
    def probabilities(scores: torch.Tensor) -> torch.Tensor:
        """(n, 2): 1 - sigmoid(logit) and sigmoid(logit)."""
        return two_columns(torch.sigmoid(scores))


class CrossEntropyLoss:
    """Softmax cross-entropy from logits (log-sum-exp), one output per class."""

    supports_runs = True
    tasks = ("binary", "multiclass")

    def __init__(self) -> None:
        self.log_probs: torch.Tensor | None = None
        self.target: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # NOTE: log softmax as z - max - log(sum(exp(z - max))): every exp is of a number
        # <= 0, so logits of +-1e4 stay finite; the max cancels in the value.
        shifted = prediction - prediction.amax(dim=-1, keepdim=True)  # (..., batch, classes)
        self.log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))
        self.target = target  # (..., batch, classes): one-hot, or any class probabilities
        return -(target * self.log_probs).sum(dim=-1).mean(dim=-1)  # () or (runs,)

    def backward(self) -> torch.Tensor:
        if self.log_probs is None or self.target is None:
            raise StateError("CrossEntropyLoss.backward called before forward")
        # softmax minus the target, weighted by the target's total (1 for one-hot rows)
        total = self.target.sum(dim=-1, keepdim=True)  # (..., batch, 1)
        return (torch.exp(self.log_probs) * total - self.target) / self.log_probs.shape[-2]

    @staticmethod
    def probabilities(scores: torch.Tensor) -> torch.Tensor:
        """(n, classes): the softmax of the logits."""
        shifted = scores - scores.amax(dim=-1, keepdim=True)
        exp = torch.exp(shifted)
        return exp / exp.sum(dim=-1, keepdim=True)


class MAELoss:
    """Mean absolute error, for regression; its gradient at an exact fit is 0, as torch's."""

    supports_runs = True
    tasks = ("regression",)

    def __init__(self) -> None:
        self.diff: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.diff = prediction - target  # (batch, out)
        return self.diff.abs().mean(dim=(-2, -1))  # () or (runs,)

    def backward(self) -> torch.Tensor:
        if self.diff is None:
            raise StateError("MAELoss.backward called before forward")
        return torch.sign(self.diff) / batch_elements(self.diff)


class HuberLoss:
    """Huber loss for regression: squared below `delta`, linear above (torch's huber_loss)."""

    supports_runs = True
    tasks = ("regression",)

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise ValueError(f"huber delta must be > 0, got {delta!r}")
        self.delta = delta
        self.diff: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.diff = prediction - target  # (batch, out)
        size = self.diff.abs()
        per_element = torch.where(
            size < self.delta, 0.5 * self.diff * self.diff, self.delta * (size - 0.5 * self.delta)
        )
        return per_element.mean(dim=(-2, -1))  # () or (runs,)

    def backward(self) -> torch.Tensor:
        if self.diff is None:
            raise StateError("HuberLoss.backward called before forward")
        clipped = self.diff.clamp(-self.delta, self.delta)  # the slope of either piece
        return clipped / batch_elements(self.diff)


class TokenCrossEntropy:
    """Cross-entropy of the next token at every position: logits (batch, time, vocab), targets (batch, time) ids.

    The mean over every position of every sequence, in nats per token (bits per token:
    divide by ln 2; perplexity: its exp), as torch's cross_entropy on the flattened positions.
    """

    tasks = ("sequence",)

    def __init__(self) -> None:
        self.log_probs: torch.Tensor | None = None
        self.ids: torch.Tensor | None = None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape[:-1] != target.shape:
            raise ShapeError(f"token_cross_entropy takes logits (batch, time, vocab) and target ids "
                             f"(batch, time); got {tuple(prediction.shape)} and {tuple(target.shape)}")
        # NOTE: log softmax as z - logsumexp(z); torch.logsumexp subtracts each row's max
        # before exp, so logits of +-1e4 stay finite. One new (batch, time, vocab) tensor.
        self.log_probs = prediction - torch.logsumexp(prediction, dim=-1, keepdim=True)
        self.ids = target.long().unsqueeze(-1)  # (batch, time, 1)
        return -self.log_probs.gather(-1, self.ids).mean()  # ()

    def backward(self) -> torch.Tensor:
        if self.log_probs is None or self.ids is None:
            raise StateError("TokenCrossEntropy.backward called before forward")
        # softmax minus the one-hot target, over the number of positions; in the log
        # probabilities' own memory (dropped: one backward per forward)
        grad, self.log_probs = self.log_probs.exp_(), None  # (batch, time, vocab)
        grad.scatter_add_(-1, self.ids, torch.full_like(self.ids, -1, dtype=grad.dtype))
        return grad.div_(self.ids.numel())

    @staticmethod
    def probabilities(scores: torch.Tensor) -> torch.Tensor:
        """(..., vocab): the softmax of the logits."""
        return CrossEntropyLoss.probabilities(scores)


@hookimpl
def register_losses(register):
    register("mse", MSELoss)
    register("bce", BCEWithLogitsLoss)
    register("cross_entropy", CrossEntropyLoss)
    register("ce", CrossEntropyLoss, summary="Alias of cross_entropy.")
    register("mae", MAELoss)
    register("huber", HuberLoss)
    register("token_cross_entropy", TokenCrossEntropy)
