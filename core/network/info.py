"""What `nn-cli info NAME` shows: a component's signature, parameters, docs and plugin.

Read from the factory with `inspect`, which needs the plugin module imported but never
torch (plugin modules import it lazily, see core.lazy).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from core.network.stack import constructor_parameters

if TYPE_CHECKING:
    from core.plugin.registry import Registry

FROM_CONTEXT = {  # who fills a parameter when the user does not
    "in_features": "inferred from the layer before",
    "generator": "the run's seeded generator",
    "dtype": "the run's dtype",
    "device": "the run's --device",
    "runs": "the number of runs trained together (None for one)",
    "layout": "chwn (batch-innermost) for images inside a network; nchw called by hand",
    "init": "the run's --init (or init=NAME in --layers)",
    "parameters": "the network's parameters",
    "n_train": "the run's n_train",
    "n_test": "the run's n_test",
    "target": "the run's --target",
}


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
            "filled_by": FROM_CONTEXT.get(pname),
        })
    record = registry.records.get(entry.plugin)
    defaults = getattr(factory, "defaults", None)  # a dataset's settings for options not typed
    extra = {"defaults": dict(defaults)} if isinstance(defaults, dict) and entry.kind == "dataset" else {}
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
