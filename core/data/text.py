"""Text as token ids: a vocabulary of characters (or bytes), the built-in corpus, windows.

A character-level model's vocabulary is the sorted set of characters of its training text;
it travels in the model file (the dataset's `class_names`, one character per token id), so
sampling encodes a prompt and decodes tokens with exactly the ids the model learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import SettingsError

if TYPE_CHECKING:
    import torch


class TextError(SettingsError):
    """Text that cannot be used: names the file or character, and what would be accepted."""


def pydoc_text() -> str:
    """The Python reference documentation that ships with CPython (pydoc_data.topics), as one
    text: every topic in name order, a blank line between (about 465 kB, 103 characters)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


@dataclass(frozen=True)
class Vocabulary:
    """Token ids <-> characters: id i is `tokens[i]`. Bytes mode: the 256 byte values, a
    token per byte of the UTF-8 text (tokens are then "\\x00".."\\xff" as latin-1 characters)."""

    tokens: tuple[str, ...]
    bytes: bool = False

    @classmethod
    def of(cls, text: str, *, use_bytes: bool = False) -> Vocabulary:
        if use_bytes:
            return cls(tuple(chr(b) for b in range(256)), True)
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """The ids of `text`; a character the vocabulary lacks is a TextError naming it."""
        if self.bytes:
            return list(text.encode("utf-8"))
        index = {t: i for i, t in enumerate(self.tokens)}
        try:
            return [index[c] for c in text]
        except KeyError as e:
            shown = "".join(t for t in self.tokens if t.isprintable())
            raise TextError(f"character {e.args[0]!r} is not in the model's vocabulary of "
                            f"{len(self.tokens)} characters ({shown!r})") from None

    def decode(self, ids: list[int]) -> str:
        if self.bytes:
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.tokens[i] for i in ids)


def read_text(path: str) -> str:
    """A UTF-8 text file's contents, or a TextError: missing, empty, binary or not UTF-8."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise TextError(f"text file {path!r} does not exist (or is not a file)")
    raw = file.read_bytes()
    if not raw:
        raise TextError(f"text file {path!r} is empty; give a UTF-8 text of at least a few hundred characters")
    if b"\x00" in raw:
        raise TextError(f"text file {path!r} looks binary (it holds NUL bytes); give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(f"text file {path!r} is not UTF-8 (byte {e.start}); give a UTF-8 text "
                        f"file, or bytes=true to read it as bytes") from None


def windows(ids: torch.Tensor, context: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs from a run of token ids: x (n, context) and y (n, context), y the
    next token at every position of x, as float64 rows; windows start every `stride` ids."""
    import torch

    starts = torch.arange(0, len(ids) - context, stride)  # (n,)
    offsets = torch.arange(context)  # (context,)
    x = ids[starts[:, None] + offsets]  # (n, context)
    y = ids[starts[:, None] + offsets + 1]
    return x.double(), y.double()
