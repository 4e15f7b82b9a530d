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

`parse_layer_text` checks the syntax only (no registry, so settings can check it early);
`parse_layers` also checks every name and key against the registry and the factories'
signatures, and returns the `LayerSpec` list that `core.network.assemble.build_stack` builds.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError
from core.keyvalue import NAME, parse_pair
from core.plugin.context import context_arguments

if TYPE_CHECKING:
    from core.network.assemble import LayerSpec
    from core.plugin.registry import Registry

STACK_KINDS = ("layer", "activation")
# Filled in by the assembler from the layer before and the run, never typed in a stack.
# (`init=NAME` may be typed: another registered initializer for that layer.)
INFERRED = tuple(name for name in context_arguments("layer") if name != "init")
EXAMPLE = "linear:out=25,tanh,linear:out=1"


def parse_layer_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, arguments) pairs a stack text names, or a SettingsError saying where it breaks.

    Each text is read once: the settings' check when they are made and `parse_layers` share
    the result (a few hundred texts are kept; a bad one raises every time)."""
    return [(name, dict(args)) for name, args in _read_layer_text(text)]


@functools.lru_cache(maxsize=256)
def _read_layer_text(text: str) -> tuple[tuple[str, MappingProxyType], ...]:
    if not text.strip():
        raise SettingsError(f"layers must name at least one component, such as {EXAMPLE!r}")
    items: list[tuple[str, dict[str, Any]]] = []
    for position, item in enumerate(text.split(","), start=1):
        name, *pairs = [part.strip() for part in item.split(":")]
        if "=" in name and items:  # `k=3` after `conv2d:out=16`: one more argument of it
            _add_arguments(items[-1][1], [item.strip()], position, item)
            continue
        if not NAME.match(name):
            raise SettingsError(
                f"layers item {position} ({item.strip()!r}) must start with a component name; "
                f"write name:key=value,... such as {EXAMPLE!r}"
            )
        args: dict[str, Any] = {}
        _add_arguments(args, pairs, position, item)
        items.append((name, args))
    return tuple((name, MappingProxyType(args)) for name, args in items)


def _add_arguments(args: dict[str, Any], pairs: list[str], position: int, item: str) -> None:
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
    from core.network.assemble import LayerSpec

    specs = []
    for name, args in parse_layer_text(text):
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
