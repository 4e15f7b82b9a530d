"""Sampling tokens from a sequence network, one at a time, with a key/value cache.

A module that keeps state across calls while sampling has `start_cache(batch)` and
`stop_cache()` (attention keeps its keys and values, position embeddings count positions):
with the cache on, each call gets only the new tokens, and the prefix is never recomputed.
Without it (`cache=False`) every token recomputes the whole window, as a plain forward does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from core.errors import SettingsError
from core.network.protocols import Module, evaluating


def walk(module: Module) -> Iterator[Module]:
    """The module and every module inside it (a Sequential's, a block's), depth first."""
    yield module
    for inner in getattr(module, "modules", ()):
        yield from walk(inner)


@contextmanager
def key_value_cache(model: Module, batch: int = 1):
    """For the block, every module that can keeps its state across calls (see above)."""
    stateful = [m for m in walk(model) if callable(getattr(m, "start_cache", None))]
    for m in stateful:
        m.start_cache(batch)
    try:
        yield model
    finally:
        for m in stateful:
            m.stop_cache()


@dataclass(frozen=True)
class Sampling:
    """How each next token is drawn from the network's logits."""

    temperature: float = 1.0  # logits / temperature before the softmax; 0: always the likeliest
    top_k: int | None = None  # draw among the k likeliest tokens only (None: all)

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and self.temperature < float("inf")):
            raise SettingsError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise SettingsError(f"top-k must be an integer >= 1, got {self.top_k!r}")

    def draw(self, logits: torch.Tensor, generator: torch.Generator) -> int:
        """One token id from (vocab,) logits."""
        if self.temperature == 0:
            return int(logits.argmax())
        if self.temperature != 1:
            logits = logits / self.temperature  # (vocab,)
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        # NOTE: the max is subtracted before exp, so no exp overflows (a stable softmax);
        # multinomial takes the weights unnormalised (the softmax's sum divides them all alike).
        weights = (logits - logits.max()).exp_()
        return int(torch.multinomial(weights, 1, generator=generator))


def sample(
    model: Module, prompt: list[int], tokens: int, *, context: int, sampling: Sampling = Sampling(),
    generator: torch.Generator, cache: bool = True, on_token: Callable[[int], None] | None = None,
) -> list[int]:
    """`tokens` new token ids after `prompt`, each drawn from the network's next-token logits.

    The network sees at most `context` tokens (the length it was built for). With `cache`,
    the prompt goes through once and then each new token alone; when the cache is full, it
    starts again from the last half of the context. Without, each token recomputes the last
    `context` tokens. `on_token(id)` gets each token as it is drawn (streaming).
    """
    if not prompt:
        raise SettingsError("the prompt must hold at least one token")
    ids = list(prompt)
    dtype = next((p.value.dtype for p in model.parameters()), torch.float32)
    device = next((p.value.device for p in model.parameters()), torch.device("cpu"))

    def run(window: list[int]) -> torch.Tensor:
        x = torch.tensor([window], dtype=dtype, device=device)  # (1, time)
        return model.forward(x)[0, -1]  # (vocab,): the logits after the window's last token

    with torch.set_grad_enabled(False), evaluating(model):
        if not cache:
            for _ in range(tokens):
                ids.append(sample_one(run(ids[-context:]), sampling, generator, on_token))
            return ids[len(prompt):]
        with key_value_cache(model, 1):
            window = ids[-context:]
            kept = len(window)
            logits = run(window)
            for step in range(tokens):
                ids.append(sample_one(logits, sampling, generator, on_token))
                if step == tokens - 1:
                    break
                if kept == context:  # full: start again from the last half of the context
                    for m in walk(model):
                        if callable(getattr(m, "start_cache", None)):
                            m.start_cache(1)
                    window = ids[-(context // 2 or 1):]
                    kept = len(window)
                    logits = run(window)
                else:
                    kept += 1
                    logits = run(ids[-1:])
    return ids[len(prompt):]


def sample_one(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator,
               on_token: Callable[[int], None] | None) -> int:
    token = sampling.draw(logits, generator)
    if on_token is not None:
        on_token(token)
    return token
