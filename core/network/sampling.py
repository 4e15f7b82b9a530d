"""Sampling tokens from a sequence network, one at a time, with a key/value cache.

A module that keeps state across calls while sampling has `start_cache(batch)` and
`stop_cache()` (attention keeps its keys and values, position embeddings count positions):
with the cache on, each call gets only the new tokens, and the prefix is never recomputed.
Without it (`cache=False`) every token recomputes the whole window, as a plain forward does.

While the cache is on, a module may also offer `decoding(batch, like)`: it returns its
forward for inference only (or None: use forward), made once per sampling with what it
needs at hand (its parameters' tensors, constants of `like`'s dtype and device; no
optimizer step runs while sampling). That function gives the same values as `forward`,
keeps nothing for a backward, and takes the sequence as rows, (batch time, features), the
form a linear layer multiplies. The first layer's takes the (batch, time) ids as int64,
unchecked: the prompt goes through `forward` (checked), the drawn tokens, known to be in
the vocabulary, through the decoding. It must not write to its input; its output is only
read. Modules without one run their `forward`. (A token at a time is one row: it costs
about as many small torch calls as the network has steps, so each call saved counts.)

NOTE: an elementwise op with a Python number (x.mul_(0.5)) turns the number into a tensor
at every call, about 1.5 us on CPU, more than the op on one row: a decoding makes its
constants once (`half = like.new_tensor(0.5)`) and writes x.mul_(half) per token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from core.errors import DivergenceError, SettingsError
from core.network.protocols import Module, evaluating
from core.network.residual import Residual
from core.network.sequential import Sequential


def walk(module: Module) -> Iterator[Module]:
    """The module and every module inside it (a Sequential's, a block's), depth first."""
    yield module
    for inner in getattr(module, "modules", ()):
        yield from walk(inner)


def stateful(model: Module) -> list[Module]:
    """The modules that keep state across calls while sampling (see above)."""
    return [m for m in walk(model) if callable(getattr(m, "start_cache", None))]


@contextmanager
def key_value_cache(model: Module, batch: int = 1):
    """For the block, every module that can keeps its state across calls (see above)."""
    keeping = stateful(model)
    for m in keeping:
        m.start_cache(batch)
    try:
        yield model
    finally:
        for m in keeping:
            m.stop_cache()


def decoder(model: Module, batch: int, dtype: torch.dtype,
            device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's inference forward while a cache is on, from (batch, time) int64 ids to
    (batch time, outputs) rows: each layer's `decoding` where it has one, chained directly,
    its `forward` elsewhere (given and giving (batch, time, features), as it expects)."""
    leaves: list[Module] = []
    like = torch.empty(0, dtype=dtype, device=device)  # for the layers' constants

    def build(module: Module) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = (isinstance(module, Sequential) and module.input_shape is None
                 and not any(module.conversions) and not module.final_conversion)
        if not plain:  # a layer, or a stack with image layouts: one step
            leaves.append(module)
            decoding = getattr(module, "decoding", None)
            decode = decoding(batch, like) if decoding is not None else None
            if decode is not None:
                return decode
            if len(leaves) == 1:  # the first layer: ids as the data has them
                return lambda ids: rows(module.forward(ids.to(dtype)))
            return lambda x: rows(module.forward(x.view(batch, -1, x.shape[-1])))
        steps = [build(m) for m in module.modules]
        if isinstance(module, Residual):
            def residual(x: torch.Tensor) -> torch.Tensor:
                out = x
                for step in steps:
                    out = step(out)
                return out + x  # a new tensor: x is no one else's to overwrite
            return residual

        def chain(x: torch.Tensor) -> torch.Tensor:
            for step in steps:
                x = step(x)
            return x
        return chain

    return build(model)


def rows(y: torch.Tensor) -> torch.Tensor:
    """(batch, time, features) -> (batch time, features): the form decode steps pass on."""
    return y.reshape(-1, y.shape[-1])


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

    def draw(self, logits: torch.Tensor, generator: torch.Generator | None) -> int:
        """One token id from (vocab,) logits."""
        return int(self.choose(logits, generator))

    def choose(self, logits: torch.Tensor, generator: torch.Generator | None,
               race: torch.Tensor | None = None) -> torch.Tensor:
        """One token id from (vocab,) logits, as a 0-dim int64 tensor (fed back without a copy).

        `race`: this draw's (vocab,) Exp(1) numbers if drawn ahead (see `races`), else drawn here.
        """
        if self.temperature == 0:
            return logits.argmax()
        if self.temperature != 1:
            logits = logits / self.temperature  # (vocab,)
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        # NOTE: the max is subtracted before exp, so no exp overflows (a stable softmax);
        # the weights stay unnormalised (the softmax's sum divides them all alike).
        weights = (logits - logits.max()).exp_()  # (vocab,)
        # torch.multinomial(weights, 1)'s own method for one draw (the exponential race:
        # argmax of w / q, q ~ Exp(1), picks i with probability w_i / sum w), the same
        # token for the same generator, without its four checks of the weights (each a
        # reduction and a sync; these weights are finite and >= 0 by construction).
        if race is None:
            race = torch.empty_like(weights).exponential_(generator=generator)
        return torch.div(weights, race, out=race).argmax()

    def races(self, tokens: int, like: torch.Tensor, generator: torch.Generator | None) -> Iterator:
        """The Exp(1) numbers of `tokens` draws from logits like `like`, drawn a block of draws
        at a time (one call instead of two per token): the same numbers, in the same order,
        as drawing them one draw at a time. None for each draw where none are needed (greedy)."""
        if self.temperature == 0:
            yield from [None] * tokens
            return
        for start in range(0, tokens, RACE_BLOCK):
            count = min(RACE_BLOCK, tokens - start)
            yield from like.new_empty(count, like.shape[-1]).exponential_(generator=generator).unbind(0)


RACE_BLOCK = 256  # draws whose Exp(1) numbers are drawn at once (memory: 256 x vocab numbers)


def sample(
    model: Module, prompt: list[int], tokens: int, *, context: int, sampling: Sampling = Sampling(),
    generator: torch.Generator | None, cache: bool = True, on_token: Callable[[int], None] | None = None,
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

    # NOTE: inference mode, not only no gradients: torch skips the autograd bookkeeping of
    # every op (version counters, view tracking), about a fifth of a token's time here
    with torch.inference_mode(), evaluating(model):
        if not cache:
            logits = finite(run(ids[-context:]))
            for step, race in enumerate(sampling.races(tokens, logits, generator)):
                if step:
                    logits = run(ids[-context:])
                ids.append(sample_one(logits, sampling, generator, on_token, race))
            return ids[len(prompt):]
        with key_value_cache(model, 1):
            decode = decoder(model, 1, dtype, device)
            window = ids[-context:]
            kept = len(window)
            logits = finite(run(window))  # the prompt through forward: its ids are checked there
            for step, race in enumerate(sampling.races(tokens, logits, generator)):
                chosen = sampling.choose(logits, generator, race)  # () int64
                token = int(chosen)
                ids.append(token)
                if on_token is not None:
                    on_token(token)
                if step == tokens - 1:
                    break
                if kept == context:  # full: start again from the last half of the context
                    for m in stateful(model):
                        m.start_cache(1)
                    window = ids[-(context // 2 or 1):]
                    kept = len(window)
                    logits = decode(torch.tensor([window], device=device))[-1]  # (vocab,)
                else:
                    kept += 1
                    logits = decode(chosen.view(1, 1))[-1]  # (vocab,)
    return ids[len(prompt):]


def finite(logits: torch.Tensor) -> torch.Tensor:
    """The prompt's logits, refused if any is NaN or infinite: the draw skips
    torch.multinomial's checks, and a diverged network would otherwise yield arbitrary ids
    (one check a sampling, not one a token)."""
    if not bool(torch.isfinite(logits).all()):
        raise DivergenceError("the network's logits after the prompt are not finite (NaN or inf): "
                              "its weights diverged; sample from a model trained without diverging")
    return logits


def sample_one(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None,
               on_token: Callable[[int], None] | None, race: torch.Tensor | None = None) -> int:
    token = int(sampling.choose(logits, generator, race))
    if on_token is not None:
        on_token(token)
    return token
