"""What `nn-cli info NAME` shows: a component's signature, parameters, docs and plugin.

Read from the factory with `inspect`, which needs the plugin module imported but never
torch (plugin modules import it lazily, see core.lazy).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from core.network.stack import constructor_parameters
from core.plugin.context import filled_by

if TYPE_CHECKING:
    from core.plugin.registry import Registry


def component_info(registry: Registry, name: str, kind: str | None = None) -> dict[str, Any]:
    """A JSON-friendly description of one registered component."""
    if kind is not None:
        entry = registry.get(kind, name)
    else:
        entry = registry.find(name, hint="pass --kind with one of them")
    factory = entry.factory
    try:
        signature = str(inspect.signature(factory))
    except (TypeError, ValueError):
        signature = "(...)"
    parameters = []
    for pname, p in constructor_parameters(factory).items():
        if p.kind == p.VAR_KEYWORD:
            parameters.append({"name": f"**{pname}", "annotation": None, "required": False,
                               "default": None, "filled_by": None})
            continue
        parameters.append({
            "name": pname,
            "annotation": None if p.annotation is p.empty else _text(p.annotation),
            "required": p.default is p.empty,
            "default": None if p.default is p.empty else repr(p.default),
            "filled_by": filled_by(pname),
        })
    record = registry.records.get(entry.plugin)
    extra = {"defaults": dict(entry.defaults)} if entry.defaults else {}  # a dataset's, for options not typed
    return {
        "kind": entry.kind,
        "name": entry.name,
        "factory": _dotted(factory),
        "signature": f"{entry.name}{signature}",
        "parameters": parameters,
        "summary": entry.summary,
        "doc": inspect.getdoc(factory) or "",
        "plugin": entry.plugin,
        "source": record.source if record else None,
        "origin": record.origin if record else None,
        **extra,
    }


def _text(annotation: Any) -> str:
    if isinstance(annotation, str):  # under `from __future__ import annotations`
        return annotation
    return getattr(annotation, "__name__", repr(annotation))


def _dotted(factory: Any) -> str:
    """`plugins.linear.Linear`: where the factory is defined."""
    qualname = getattr(factory, "__qualname__", repr(factory))
    return f"{getattr(factory, '__module__', '?')}.{qualname}"


def info_text(data: dict[str, Any]) -> str:
    """`component_info`'s description as `nn-cli info` prints it."""
    lines = [f"{data['kind']} {data['name']}: {data['summary']}", f"  {data['signature']}",
             f"  factory {data['factory']}, plugin {data['plugin']} "
             f"({data['source']} {data['origin']})", "parameters:"]
    for p in data["parameters"]:
        kind_text = f": {p['annotation']}" if p["annotation"] else ""
        default = "required" if p["required"] else f"default {p['default']}"
        filled = f"; filled in: {p['filled_by']}" if p["filled_by"] else ""
        lines.append(f"  {p['name']}{kind_text}  ({default}{filled})")
    if not data["parameters"]:
        lines.append("  none")
    if data.get("defaults"):
        shown = ", ".join(f"{k}={v}" for k, v in data["defaults"].items())
        lines.append(f"defaults for options not typed: {shown}")
    if data["doc"]:
        lines.append("\n" + data["doc"])
    return "\n".join(lines)
