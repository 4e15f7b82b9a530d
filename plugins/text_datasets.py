"""Text datasets: a user's UTF-8 file, and the Python documentation that ships with CPython.

Each is a "sequence" task (core/data/dataset.py): rows of `context` token ids and, for
each, the next token at every position. The tokens are the text's characters (or its
bytes, `bytes=true`); the vocabulary is the dataset's class names, so a model file keeps
it and `nn-cli generate` samples with it. The last `held_out` share of the text is the
test split (held out as one piece, so no test window overlaps a training one).
"""

from __future__ import annotations

from core import Dataset, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast

# What a GPT on text trains with unless told otherwise (TrainSettings fields): a 3-block,
# width-128 GPT with dropout 0.1, AdamW at 3e-3 with a cosine schedule, batches of 32
# windows, 11 epochs: about 9 minutes of one core on the pydoc corpus, 1.70 bits per
# character on its held-out tail (README, "A GPT from scratch"). Width 64 for 25 epochs
# learnt its training text far better and the held-out tail worse (2.00 bits).
GPT_DEFAULTS = {
    "layers": "gpt:width=128,blocks=3,heads=4,dropout=0.1", "loss": "token_cross_entropy",
    "optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 11, "schedule": "cosine",
    "init": "xavier", "preprocess": "none",
}


def text_dataset(
    name: str, text: str, *, context: int, stride: int | None, held_out: float, use_bytes: bool,
) -> Dataset:
    """Windows of `text` as a sequence Dataset (see the module's docstring)."""
    from core.data.text import TextError, Vocabulary, windows

    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise TextError(f"context must be an integer >= 1, got {context!r}")
    stride = context // 2 or 1 if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise TextError(f"stride must be an integer >= 1, got {stride!r}")
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 < held_out < 1:
        raise TextError(f"held_out must be a fraction in (0, 1), got {held_out!r}")
    vocab = Vocabulary.of(text, use_bytes=use_bytes)
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)  # (length,)
    cut = int(len(ids) * (1 - held_out))
    train, test = ids[:cut], ids[cut:]
    shortest = min(len(train), len(test)) - 1  # a window needs context + 1 tokens
    if shortest < context:
        raise TextError(
            f"text {name!r} is too short for context {context}: {len(ids):,} tokens, of which "
            f"{len(test):,} held out; give at least {int((context + 1) / min(held_out, 1 - held_out)) + 1:,} "
            f"tokens or a shorter context"
        )
    x_train, y_train = windows(train, context, stride)
    x_test, y_test = windows(test, context, context)  # held out: each position once
    return Dataset(
        name, "sequence", x_train, y_train, tuple(f"t{i}" for i in range(context)), (context,),
        vocab.tokens, x_test, y_test,
        description=f"{len(ids):,} {'bytes' if use_bytes else 'characters'}, "
                    f"{len(vocab)} distinct; windows of {context}, the last {held_out:.0%} held out",
    )


def text(path: str, context: int = 64, stride: int | None = None, held_out: float = 0.1,
         bytes: bool = False) -> Dataset:  # noqa: A002 -- `bytes=true` reads best in --data
    """A UTF-8 text file as next-character windows (bytes=true: next byte)."""
    from core.data.text import read_text

    return text_dataset(path, read_text(path), context=context, stride=stride, held_out=held_out,
                        use_bytes=bytes)


def pydoc(context: int = 64, stride: int | None = None, held_out: float = 0.1) -> Dataset:
    """The Python reference documentation shipped with CPython (pydoc_data.topics), as next-character windows."""
    from core.data.text import pydoc_text

    return text_dataset("pydoc", pydoc_text(), context=context, stride=stride, held_out=held_out,
                        use_bytes=False)


@hookimpl
def register_datasets(register):
    register("text", text, defaults=GPT_DEFAULTS)
    register("pydoc", pydoc, defaults=GPT_DEFAULTS)
