"""Text from a saved character-level model: `nn-cli generate`'s library half.

The model file keeps the vocabulary (its dataset's class names, one token per id) and the
context it was trained on (its input width); sampling goes through the key/value cache
(core/network/sampling.py), each character handed on as soon as it is drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.data.text import TextError, Vocabulary
from core.files.model_file import LoadedModel, load_model
from core.network.sampling import Sampling, sample
from core.plugin.registry import Registry


def vocabulary_of(loaded: LoadedModel) -> Vocabulary:
    """The vocabulary a text model was trained with, or a TextError for any other model."""
    if loaded.task != "sequence":
        raise TextError(f"{loaded.path}: a {loaded.task} model, not a text model; train one with "
                        f"--data pydoc or --data text:path=FILE")
    tokens = tuple(loaded.dataset["class_names"])
    return Vocabulary(tokens, bytes=tokens == tuple(chr(b) for b in range(256)))


def generate_text(
    path: str, prompt: str, tokens: int, *, sampling: Sampling = Sampling(), seed: int = 0,
    registry: Registry | None = None, on_text: Callable[[str], None] | None = None,
) -> str:
    """`tokens` characters (or bytes) after `prompt`, from the model file at `path`; the
    same seed draws the same text. `on_text` gets the prompt, once it is known to fit the
    vocabulary, then each piece as it is drawn."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise TextError(f"tokens must be an integer >= 0, got {tokens!r}")
    loaded = load_model(path, registry)
    vocab = vocabulary_of(loaded)
    ids = vocab.encode(prompt)  # a character the model never saw: a TextError naming it
    if not ids:
        raise TextError("the prompt must hold at least one character (try --prompt 'The ')")
    if on_text is not None:
        on_text(prompt)
    pending = bytearray()

    def emit(token: int) -> None:
        if on_text is None:
            return
        if not vocab.bytes:
            on_text(vocab.tokens[token])
            return
        pending.append(token)  # a UTF-8 character may take several bytes: hand on whole ones
        try:
            on_text(pending.decode("utf-8"))
            pending.clear()
        except UnicodeDecodeError:
            if len(pending) >= 4:
                on_text(pending.decode("utf-8", errors="replace"))
                pending.clear()

    drawn = sample(loaded.model, ids, tokens, context=loaded.in_features, sampling=sampling,
                   generator=torch.Generator().manual_seed(seed), on_token=emit)
    return vocab.decode(drawn)
