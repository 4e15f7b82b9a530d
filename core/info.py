"""What `nn-cli info NAME` shows: a component's signature, parameters, docs and plugin.

Read from the factory with `inspect`, which needs the plugin module imported but never
torch (plugin modules import it lazily, see core.lazy).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError, UnknownComponentError
from core.registry import KINDS
from core.stack import INFERRED, constructor_parameters

if TYPE_CHECKING:
    from core.registry import Entry, Registry

FROM_CONTEXT = {  # who fills a parameter when the user does not
    "in_features": "inferred from the layer before",
    "generator": "the run's seeded generator",
    "dtype": "the run's dtype",
    "init": "the run's --init (or init=NAME in --layers)",
    "parameters": "the network's parameters",
}


def find_entry(registry: Registry, name: str, kind: str | None = None) -> Entry:
    """The entry called `name`; its kind is needed only when several kinds use the name."""
    if kind is not None:
        return registry.get(kind, name)
    kinds = [k for k in KINDS if name in registry.names(k)]
    if len(kinds) > 1:
        raise SettingsError(
            f"{name!r} names a component of several kinds: {', '.join(kinds)}; "
            f"pass --kind {kinds[0]} (or another of them)"
        )
    if not kinds:
        known = sorted({e.name for e in registry.entries()})
        raise UnknownComponentError("component", name, known, see="nn-cli list")
    return registry.get(kinds[0], name)


def component_info(registry: Registry, name: str, kind: str | None = None) -> dict[str, Any]:
    """A JSON-friendly description of one registered component."""
    entry = find_entry(registry, name, kind)
    factory = entry.factory
    try:
        signature = str(inspect.signature(factory))
    except (TypeError, ValueError):
        signature = "(...)"
    parameters = []
    for pname, p in constructor_parameters(factory).items():
        if p.kind == p.VAR_KEYWORD:
            parameters.append({"name": f"**{pname}", "default": None, "required": False,
                               "annotation": None, "filled_by": None})
            continue
        parameters.append({
            "name": pname,
            "annotation": None if p.annotation is p.empty else _text(p.annotation),
            "required": p.default is p.empty,
            "default": None if p.default is p.empty else repr(p.default),
            "filled_by": FROM_CONTEXT.get(pname) if pname in (*INFERRED, "init", "parameters") else None,
        })
    record = registry.records.get(entry.plugin)
    return {
        "kind": entry.kind,
        "name": entry.name,
        "factory": f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}",
        "signature": f"{entry.name}{signature}",
        "parameters": parameters,
        "summary": entry.summary,
        "doc": inspect.getdoc(factory) or "",
        "plugin": entry.plugin,
        "source": record.source if record else None,
        "origin": record.origin if record else None,
    }


def _text(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
