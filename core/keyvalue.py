"""`key=value` text, read one way wherever the CLI takes it: `--opt momentum=0.9`, `--data
spiral:arms=3` and `--layers linear:out=25`.

A key is a Python name; a value reads as an int, a float, true/false, or else stays text.
Each caller says what it accepts and words its own error (it knows the option and an example).
"""

from __future__ import annotations

import re

Value = int | float | bool | str
KEY = re.compile(r"[A-Za-z_]\w*\Z")
NAME = re.compile(r"[A-Za-z_][\w.-]*\Z")  # a registered name, before its `:key=value,...`


def parse_value(text: str) -> Value:
    """'3' -> 3, '0.2' -> 0.2, '1e-3' -> 0.001, 'true' -> True, anything else stays a str."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pair(text: str) -> tuple[str, Value] | None:
    """'momentum=0.9' -> ('momentum', 0.9); None when the text is not key=value (a key that
    is a Python name, a value that is not empty)."""
    key, sep, value = (part.strip() for part in text.partition("="))
    if not sep or not KEY.match(key) or not value:
        return None
    return key, parse_value(value)
