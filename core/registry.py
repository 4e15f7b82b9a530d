"""The component registry: kind -> name -> Entry, filled by pluggy plugins.

Built-in components arrive exactly as third-party ones do: `registry.toml` names the
plugin modules of the built-in set; each is registered with pluggy, and its hooks call
`register(...)` for the components it provides.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from core import hookspecs
from core.errors import RegistrationError, UnknownComponentError

# kind -> the hook that registers it
HOOKS = {
    "layer": "register_layers",
    "activation": "register_activations",
    "loss": "register_losses",
    "initializer": "register_initializers",
    "optimizer": "register_optimizers",
}
KINDS = tuple(HOOKS)

# Methods an object must have to be accepted for its kind (checked on the factory,
# which for the built-ins is the class itself).
REQUIRED_METHODS = {
    "layer": ("forward", "backward", "parameters"),
    "activation": ("forward", "backward", "parameters"),
    "loss": ("forward", "backward"),
    "initializer": ("__call__",),
    "optimizer": ("step", "zero_grad"),
}


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str  # one of KINDS
    name: str  # what users type: `--act tanh`
    factory: Callable[..., Any]  # builds the component from keyword arguments
    plugin: str  # name of the plugin that registered it
    summary: str  # one line for `nn-cli list`

    def create(self, **kwargs: Any) -> Any:
        return self.factory(**kwargs)


def first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind and name, and the pluggy manager of the plugins behind them."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    # -- filling ---------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register `plugin` with pluggy and record every component its hooks register."""
        name = self.plugin_manager.register(plugin, name=name)
        for kind, hook_name in HOOKS.items():
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(register=self._register_callback(kind, name))
        return name

    def add_module(self, module_name: str) -> str:
        """Import a plugin module by its dotted name and add it."""
        return self.add_plugin(importlib.import_module(module_name), name=module_name)

    def _register_callback(self, kind: str, plugin: str) -> Callable[..., None]:
        def register(
            name: str, factory: Callable[..., Any], *, summary: str | None = None,
            override: bool = False,
        ) -> None:
            missing = [m for m in REQUIRED_METHODS[kind] if not callable(getattr(factory, m, None))]
            if missing and not (kind == "initializer" and callable(factory)):
                raise RegistrationError(
                    f"plugin {plugin!r} registered {kind} {name!r} without method "
                    f"{', '.join(missing)} required of every {kind}"
                )
            previous = self._entries[kind].get(name)
            if previous is not None and not override:
                raise RegistrationError(
                    f"{kind} {name!r} is registered by both {previous.plugin!r} and {plugin!r}; "
                    f"pass override=True in the one meant to replace the other"
                )
            self._entries[kind][name] = Entry(
                kind, name, factory, plugin, summary or first_doc_line(factory)
            )

        return register

    # -- lookup ----------------------------------------------------------------------
    def _of_kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise UnknownComponentError("kind", kind, list(KINDS), see="nn-cli list")
        return self._entries[kind]

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._of_kind(kind)[name]
        except KeyError:
            raise UnknownComponentError(kind, name, list(self._entries[kind])) from None

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        return self.get(kind, name).create(**kwargs)

    def names(self, kind: str) -> list[str]:
        return sorted(self._of_kind(kind))

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in self.names(k)]


def builtin_manifest() -> Path:
    """Where the built-in `registry.toml` lies: beside `core/` in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "registry.toml", here.parent / "registry.toml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"registry.toml not found beside or inside {here}")


def read_manifest(path: Path) -> list[str]:
    """The plugin modules a `registry.toml` lists (read with tomllib, never executed)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    modules = data.get("plugins", {}).get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise RegistrationError(f"{path}: [plugins] modules must be a list of module names")
    return modules


def default_registry() -> Registry:
    """A registry holding the built-in plugins that `registry.toml` lists."""
    registry = Registry()
    for module_name in read_manifest(builtin_manifest()):
        registry.add_module(module_name)
    return registry
