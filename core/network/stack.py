"""A network written as text: `linear:out=25,tanh,my_layer:alpha=0.2,linear:out=1`.

Components are separated by commas; each is a registered layer or activation name,
followed by `:key=value` constructor arguments. A comma-separated `key=value` with no name
adds to the component before it, so `conv2d:out=16,k=3,pad=1,relu` reads as
`conv2d:out=16:k=3:pad=1,relu`. Values read as int, float, bool
(`true`/`false`) or else str. A key may be shortened to a unique prefix of the factory's
parameter (`out` for `out_features`). A value must fit the parameter's annotation when it
is a plain `int`, `float`, `bool` or `str` (or a union of them; an int is taken for a
float). `in_features`, `generator`, `dtype`, `device` and `runs` come from the context
(the layer before, the run) and may not be given; `init=NAME` picks another registered
initializer for that layer. Whatever else a value must be, the constructor judges: its
ValueError or TypeError becomes a SettingsError naming the layer (core.network.assemble).

Blocks: `residual(a,b,...)` is x + b(a(x)), a skip connection around the layers inside
(which must give back the shape they take); `N*item` is the item N times over, each copy
with weights of its own; `(a,b)` groups items, for a repeat. A transformer's two blocks:
`2*(residual(layernorm,attention:heads=4),residual(layernorm,linear:out=256,gelu,linear:out=64))`.

`parse_layer_text` checks the syntax only (no registry, so settings can check it early);
`parse_layers` also checks every name and key against the registry and the factories'
signatures, and returns the `LayerSpec` list that `core.network.assemble.build_stack` builds.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError
from core.keyvalue import NAME, parse_pair
from core.plugin.context import context_arguments

if TYPE_CHECKING:
    from core.plugin.registry import Registry

STACK_KINDS = ("layer", "activation")
# Filled in by the assembler from the layer before and the run, never typed in a stack.
# (`init=NAME` may be typed: another registered initializer for that layer.)
INFERRED = tuple(name for name in context_arguments("layer") if name != "init")
EXAMPLE = "linear:out=25,tanh,linear:out=1"
BLOCK_EXAMPLE = "conv2d:out=8,k=3,pad=1,2*residual(conv2d:out=8,k=3,pad=1,relu),flatten,linear:out=10"
RESIDUAL = "residual"  # `residual(a,b)`: x + b(a(x)), not a registered name
_REPEAT = re.compile(r"\s*(\d+)\s*\*(.*)\Z", re.S)


@dataclass(frozen=True)
class LayerSpec:
    """One module of a network, by registered kind and name."""

    kind: str  # "layer", "activation", or "residual" (a block: args["layers"] holds its specs)
    name: str  # the registered name, e.g. "linear"
    args: dict[str, Any] = field(default_factory=dict)  # explicit constructor arguments

    def to_dict(self) -> dict[str, Any]:
        args = dict(self.args)
        if self.kind == RESIDUAL:  # a block: its layers' specs, nested
            args["layers"] = [s.to_dict() for s in args["layers"]]
        return {"kind": self.kind, "name": self.name, "args": args}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        args = dict(d.get("args", {}))
        if d["kind"] == RESIDUAL:
            args["layers"] = [cls.from_dict(s) for s in args.get("layers", [])]
        return cls(d["kind"], d["name"], args)

    def text(self) -> str:
        """As a stack text writes it: `linear:out_features=3`, `residual(layernorm,gelu)`."""
        if self.kind == RESIDUAL:
            return f"residual({','.join(s.text() for s in self.args['layers'])})"
        return self.name + "".join(f":{k}={v}" for k, v in self.args.items())




def parse_layer_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, arguments) pairs a stack text names, or a SettingsError saying where it breaks.

    A residual block is the pair ("residual", {"layers": its own pairs}); a repeat
    (`3*item`, `2*(a,b)`) is written out, one copy after the other.
    """
    return copy.deepcopy(_read_layer_text(text))


@functools.lru_cache(maxsize=256)
def _read_layer_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Each text is read once: the settings' check when they are made and `parse_layers`
    share the result (copied out: a block's pairs nest; a bad text raises every time)."""
    if not text.strip():
        raise SettingsError(f"layers must name at least one component, such as {EXAMPLE!r}")
    return _parse_items(text, "")


def _parse_items(text: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    items: list[tuple[str, dict[str, Any]]] = []
    for position, item in enumerate(_top_level_parts(text), start=1):
        label = f"{where}{position}"
        count, body = _repeat(item, label)
        group = _group(body, label)
        if group is None:  # a component, or one more argument of the one before
            name, *pairs = [part.strip() for part in body.split(":")]
            if "=" in name and items and count == 1 and items[-1][0] != RESIDUAL:
                _add_arguments(items[-1][1], [body.strip()], label, item)
                continue
            if not NAME.match(name):
                raise SettingsError(
                    f"layers item {label} ({item.strip()!r}) must start with a component name; "
                    f"write name:key=value,... such as {EXAMPLE!r}"
                )
            args: dict[str, Any] = {}
            _add_arguments(args, pairs, label, item)
            group = [(name, args)]
        for _ in range(count):  # each copy its own arguments (and so its own weights)
            items += copy.deepcopy(group)
    return items


def _top_level_parts(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise SettingsError(f"layers {text.strip()!r}: a ')' closes nothing; "
                                f"write residual(a,b) or N*(a,b), e.g. {BLOCK_EXAMPLE!r}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SettingsError(f"layers {text.strip()!r}: a '(' is never closed; "
                            f"write residual(a,b) or N*(a,b), e.g. {BLOCK_EXAMPLE!r}")
    return parts + [text[start:]]


def _repeat(item: str, label: str) -> tuple[int, str]:
    """(N, what follows `N*`), or (1, the item)."""
    match = _REPEAT.match(item)
    if match is None:
        return 1, item
    count = int(match.group(1))
    if count < 1:
        raise SettingsError(f"layers item {label} ({item.strip()!r}): repeat at least once, e.g. 2*(...)")
    return count, match.group(2)


def _group(body: str, label: str) -> list[tuple[str, dict[str, Any]]] | None:
    """The pairs of `(a,b)` or `residual(a,b)`; None for a plain component."""
    text = body.strip()
    if not text.endswith(")"):
        return None
    if text.startswith("("):
        return _parse_items(text[1:-1], f"{label}.")
    name, paren, inner = text.partition("(")
    if paren and name.strip() == RESIDUAL:
        return [(RESIDUAL, {"layers": _parse_items(inner[:-1], f"{label}.")})]
    raise SettingsError(f"layers item {label} ({text!r}): only residual(...) and (...) group "
                        f"layers; e.g. {BLOCK_EXAMPLE!r}")


def _add_arguments(args: dict[str, Any], pairs: list[str], position: int | str, item: str) -> None:
    for pair in pairs:
        parsed = parse_pair(pair)
        if parsed is None:
            raise SettingsError(
                f"layers item {position} ({item.strip()!r}): {pair!r} is not key=value; "
                f"write name:key=value, such as 'linear:out=25'"
            )
        key, value = parsed
        if key in args:
            raise SettingsError(f"layers item {position} ({item.strip()!r}) gives {key!r} twice")
        args[key] = value


def parse_layers(text: str, registry: Registry) -> list[LayerSpec]:
    """The checked specs of a stack text: names resolved, keys matched to signatures."""
    return _specs(parse_layer_text(text), registry)


def _specs(items: list[tuple[str, dict[str, Any]]], registry: Registry) -> list[LayerSpec]:
    specs = []
    for name, args in items:
        if name == RESIDUAL:
            specs.append(LayerSpec(RESIDUAL, RESIDUAL, {"layers": _specs(args["layers"], registry)}))
            continue
        entry = registry.find(name, STACK_KINDS, hint="rename one of them")
        args = _checked_args(entry.kind, name, entry.factory, args)
        specs.append(LayerSpec(entry.kind, name, args))
    return specs


def constructor_parameters(factory: Any) -> dict[str, inspect.Parameter]:
    """The keyword parameters a factory accepts (its __init__'s, for a class)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: accept what is given
        return {}
    return {
        n: p for n, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.VAR_KEYWORD)
    }


def match_key(key: str, settable: list[str], takes_any: bool) -> tuple[str, str | None]:
    """(the parameter `key` names, None): itself, or the one it uniquely begins (`out` for
    `out_features`); a factory taking **kwargs takes any other key as it is. Else
    (key, "is not an" / "is an ambiguous"), for the caller's message."""
    matches = [key] if key in settable else [n for n in settable if n.startswith(key)]
    if len(matches) > 1:  # `out`: out_channels, a whole first word, over output_padding
        matches = [n for n in matches if n.split("_")[0] == key] or matches
    if len(matches) == 1:
        return matches[0], None
    if takes_any:
        return key, None
    return key, "is an ambiguous" if matches else "is not an"


def _checked_args(kind: str, name: str, factory: Any, args: dict[str, Any]) -> dict[str, Any]:
    parameters = constructor_parameters(factory)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    settable = [n for n, p in parameters.items() if n not in INFERRED and p.kind != p.VAR_KEYWORD]
    accepted = ", ".join(settable) or "none"
    checked: dict[str, Any] = {}
    for key, value in args.items():
        if key in INFERRED:
            raise SettingsError(
                f"{kind} {name!r}: {key} is filled in by the assembler, not given in layers"
            )
        full, problem = match_key(key, settable, takes_any)
        if problem:
            raise SettingsError(
                f"{kind} {name!r}: {key!r} {problem} argument; its arguments are {accepted} "
                f"(see `nn-cli info {name}`)"
            )
        if full in parameters:
            value = _typed(kind, name, full, value, parameters[full])
        checked[full] = value
    missing = [
        n for n, p in parameters.items()
        if p.default is p.empty and p.kind != p.VAR_KEYWORD
        and n not in INFERRED and n != "init" and n not in checked
    ]
    if missing:
        raise SettingsError(
            f"{kind} {name!r} needs {', '.join(missing)}; write e.g. "
            f"{name}:{missing[0]}=... (its arguments are {accepted})"
        )
    return checked


# The annotations a stack value is checked against, as written or as types.
_PLAIN = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
_WORDS = {int: "an int", float: "a float", bool: "true or false", str: "text"}


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """The plain types an annotation allows (`float`, `int | None`), or None when it names
    anything else: then the constructor alone judges the value."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):  # under `from __future__ import annotations`
        found = [_PLAIN.get(part.strip()) for part in annotation.split("|")]
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a if a in _PLAIN.values() else None for a in typing.get_args(annotation)]
    else:
        found = [annotation if annotation in _PLAIN.values() else None]
    return None if None in found else tuple(found)


def _typed(kind: str, name: str, key: str, value: Any, parameter: inspect.Parameter) -> Any:
    """`value` as the parameter's annotation takes it, or a SettingsError naming both."""
    accepted = _plain_types(parameter.annotation)
    if accepted is None:
        return value
    if isinstance(value, bool):
        fits = bool in accepted
    elif isinstance(value, int) and int not in accepted and float in accepted:
        value, fits = float(value), True  # `eps=1` for a float
    else:
        fits = type(value) in accepted
    if not fits:
        wanted = " or ".join(_WORDS[t] for t in accepted if t in _WORDS)
        raise SettingsError(f"{kind} {name!r}: {key} must be {wanted}, got {value!r}")
    return value
