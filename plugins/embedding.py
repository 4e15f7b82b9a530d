"""Token and position embeddings: the first layers of a sequence model.

A sequence network takes rows of token ids, (batch, time), as floats (the data pipeline
keeps every input as a float row); `embedding` turns each id into a learned vector,
(batch, time, width), and `position` adds a learned vector per position, as GPT-2 does.
"""

from __future__ import annotations

from core import Initializer, Parameter, ShapeError, StateError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast


class Embedding:
    """A learned vector per token id: (batch, time) ids -> (batch, time, width).

    Its input is ids, not values: the ids get no gradient, so backward returns zeros of the
    input's shape (None when nobody reads it, as the first layer of a network).
    """

    needs_input_grad = True  # Sequential sets it False on its first layer (core.network.protocols)

    def __init__(
        self,
        width: int,
        init: Initializer,
        vocab: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ):
        if vocab is None:
            raise ValueError("embedding needs vocab, the number of distinct tokens; the text "
                             "datasets fill it in, else write embedding:vocab=N")
        for name, value in (("vocab", vocab), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.vocab, self.width = vocab, width
        weight = torch.empty(vocab, width, dtype=dtype, device=device)
        init(weight, vocab, width, generator)  # (vocab, width)
        self.weight = Parameter.of(weight, "weight")
        self.ids: torch.Tensor | None = None  # cached by forward: where the gradient goes
        self.input_like: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()  # (batch, time)
        flat = ids.reshape(-1)
        if flat.numel():
            low, high = (int(t) for t in torch.aminmax(flat))
            if low < 0 or high >= self.vocab:
                bad = low if low < 0 else high
                raise ShapeError(f"embedding: token id {bad} is outside the vocabulary 0..{self.vocab - 1}")
        self.ids, self.input_like = flat, x
        return self.weight.value.index_select(0, flat).view(*ids.shape, self.width)  # (batch, time, width)

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py): int64 ids, already known to be in
        the vocabulary (drawn from its logits), so no check (a sync); (batch time, width) rows."""
        table = self.weight.value  # (vocab, width)
        return lambda ids: table.index_select(0, ids.reshape(-1))

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor | None:
        if self.ids is None:
            raise StateError("Embedding.backward called before forward (each forward allows one backward)")
        ids, x = self.ids, self.input_like
        self.ids = self.input_like = None
        # Each id's row gets the sum of the gradients at every place it was used.
        self.weight.grad.index_add_(0, ids, grad_output.reshape(-1, self.width))  # (vocab, width)
        return None if not self.needs_input_grad else torch.zeros_like(x)

    def parameters(self) -> list[Parameter]:
        return [self.weight]

    def example_input(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype):
        """Ids to check it on: the authoring kit draws these instead of normal values."""
        return torch.randint(0, self.vocab, shape, generator=generator).to(dtype)

    __call__ = forward


class PositionEmbedding:
    """Adds a learned vector per position: x (batch, time, width) + table[:time].

    The table has one row per position of the input it was built for (the context);
    a shorter input uses its first rows. While a key/value cache is on (`start_cache`),
    each call continues where the last one ended, as the tokens it gets do.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        init: Initializer,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ):
        if len(in_shape) != 2:
            raise ShapeError(f"position needs (time, width) inputs, after an embedding; got {tuple(in_shape)}")
        self.context, self.width = in_shape
        table = torch.empty(self.context, self.width, dtype=dtype, device=device)
        init(table, self.context, self.width, generator)  # (context, width)
        self.weight = Parameter.of(table, "weight")
        self.time: int | None = None  # the last forward's length, for backward
        self.offset: int | None = None  # the next position while a cache is on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time = x.shape[-2]
        start = self.offset or 0
        if start + time > self.context:
            raise ShapeError(f"position: {start + time} positions, but it was built for a "
                             f"context of {self.context}")
        if self.offset is not None:
            self.offset += time
        else:
            self.time = time
        return x + self.weight.value[start:start + time]  # (batch, time, width)

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        if self.time is None:
            raise StateError("PositionEmbedding.backward called before forward")
        time, self.time = self.time, None
        self.weight.grad[:time] += grad_output.reshape(-1, time, self.width).sum(0)  # (time, width)
        return grad_output

    def decoding(self, batch: int, like: torch.Tensor):
        """forward while sampling (core/network/sampling.py), on (batch time, width) rows: the
        next positions' vectors added."""
        table, width, context = self.weight.value, self.width, self.context

        def decode(rows: torch.Tensor) -> torch.Tensor:
            start, time = self.offset, rows.shape[0] // batch
            if start + time > context:
                raise ShapeError(f"position: {start + time} positions, but it was built for a "
                                 f"context of {context}")
            self.offset = start + time
            here = table.narrow(0, start, time)  # (time, width)
            return rows + here if batch == 1 else (rows.view(batch, time, width) + here).view(-1, width)
        return decode

    def start_cache(self, batch: int) -> None:
        """Count positions across calls (token by token sampling), from 0."""
        self.offset = 0

    def stop_cache(self) -> None:
        self.offset = None

    def parameters(self) -> list[Parameter]:
        return [self.weight]

    __call__ = forward


@hookimpl
def register_layers(register):
    register("embedding", Embedding)
    register("position", PositionEmbedding)
