"""The component registry: kind -> name -> Entry, filled by pluggy plugins.

Built-in components arrive exactly as third-party ones do: `registry.toml` names the
plugin modules of the built-in set; each is registered with pluggy, and its hooks call
`register(...)` for the components it provides. Adding a plugin is all or nothing: if its
hooks are malformed, if one raises, or if it registers something refused (a missing protocol
method, a name already taken), the plugin is unregistered and none of its components stay.
Finding plugins (entry points, a user's registry.toml, `--plugin`) is `core.plugin.discovery`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import functools
import inspect
import re
import tomllib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from core.plugin import hookspecs
from core.errors import PluginError, RegistrationError, SettingsError, UnknownComponentError

# kind -> the hook that registers it
HOOKS = {
    "layer": "register_layers",
    "activation": "register_activations",
    "loss": "register_losses",
    "initializer": "register_initializers",
    "optimizer": "register_optimizers",
    "dataset": "register_datasets",
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
    "dataset": ("__call__",),  # a function (or class) returning a core.Dataset
}


@dataclass(frozen=True)
class Entry:
    """One registered component.

    `target` is the factory itself, or a "module:attr" path to it that is imported the
    first time `factory` is read (when the component is built or described), so that a
    plugin with heavy dependencies can be listed without importing them.
    """

    kind: str  # one of KINDS
    name: str  # what users type: `--act tanh`
    target: Callable[..., Any] | str  # the factory, or "module:attr" naming it
    plugin: str  # name of the plugin that registered it
    summary: str  # one line for `nn-cli list`
    # A dataset's settings for the options a user leaves out (`register(..., defaults=...)`).
    defaults: dict[str, Any] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def factory(self) -> Callable[..., Any]:
        """Builds the component from keyword arguments (imported now if registered by path)."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            factory = functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))
        except Exception as e:
            raise PluginError(
                f"plugin {self.plugin!r}: {self.kind} {self.name!r} could not be loaded from "
                f"{self.target!r}: {error_line(e)}"
            ) from None
        missing = missing_methods(self.kind, factory)
        if missing:
            raise RegistrationError(
                f"plugin {self.plugin!r} registered {self.kind} {self.name!r} ({self.target}) "
                f"without method {', '.join(missing)} required of every {self.kind}"
            )
        return factory

    def create(self, **kwargs: Any) -> Any:
        return self.factory(**kwargs)


def missing_methods(kind: str, factory: Any) -> list[str]:
    """The methods of its kind's protocol that `factory` lacks (any callable has `__call__`,
    so a plain function may initialize)."""
    if kind == "layer" and getattr(factory, "composite", False):  # returns a stack text
        return []
    return [m for m in REQUIRED_METHODS[kind] if not callable(getattr(factory, m, None))]


_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")


@dataclass
class PluginRecord:
    """One plugin the registry tried to load, for `nn-cli plugins`."""

    name: str  # the pluggy name; what `Entry.plugin` holds
    source: str  # "builtin", "entry point", "registry.toml" or "--plugin"
    origin: str = ""  # distribution and version, a file's path, or the manifest it came from
    distribution: str | None = None  # the installed distribution, for entry points
    version: str | None = None  # that distribution's version
    path: str | None = None  # the plugin's file, when known
    components: list[str] = field(default_factory=list)  # "kind name", as registered
    error: str | None = None  # one line: why it was not loaded

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "origin": self.origin,
            "distribution": self.distribution, "version": self.version, "path": self.path,
            "components": list(self.components), "error": self.error,
        }


def first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind and name, and the pluggy manager of the plugins behind them."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.records: dict[str, PluginRecord] = {}  # every plugin tried, loaded or not

    # -- filling ---------------------------------------------------------------------
    def add_plugin(
        self, plugin: object, name: str | None = None, record: PluginRecord | None = None
    ) -> str:
        """Register `plugin` with pluggy and record every component its hooks register.

        All or nothing: a `PluginError` (malformed hook, hook raised) or `RegistrationError`
        (refused component) leaves the registry as it was.
        """
        try:
            name = self.plugin_manager.register(plugin, name=name)
        except pluggy.PluginValidationError as e:
            raise PluginError(_validation_line(name or repr(plugin), e)) from None
        except ValueError as e:  # pluggy: that name or object is registered already
            raise PluginError(f"plugin {name!r}: {e}") from None
        staged: dict[tuple[str, str], Entry] = {}
        try:
            self._check_hooks(plugin, name)
            for kind, hook_name in HOOKS.items():
                for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                    if impl.plugin_name == name:
                        callback = self._register_callback(kind, name, staged, record)
                        try:
                            impl.function(register=callback)
                        except (RegistrationError, PluginError):
                            raise
                        except Exception as e:
                            raise PluginError(
                                f"plugin {name!r}: hook {hook_name} raised {error_line(e)}"
                            ) from e
        except BaseException:
            self.plugin_manager.unregister(name=name)
            raise
        for (kind, component), entry in staged.items():
            self._entries[kind][component] = entry
        record = record or PluginRecord(name, "python")
        record.name = name
        record.components = [f"{kind} {component}" for kind, component in staged]
        self.records[name] = record
        return name

    def _check_hooks(self, plugin: object, name: str) -> None:
        """Refuse hooks pluggy would silently ignore: unknown names, forgotten markers."""
        try:
            self.plugin_manager.check_pending()
        except pluggy.PluginValidationError as e:
            raise PluginError(_validation_line(name, e)) from None
        marker = f"{hookspecs.PROJECT}_impl"
        for hook_name in HOOKS.values():
            function = getattr(plugin, hook_name, None)
            if callable(function) and not hasattr(function, marker):
                raise PluginError(
                    f"plugin {name!r}: {hook_name} lacks @hookimpl, so pluggy never calls it "
                    f"(decorate it with core.hookimpl)"
                )

    def add_module(self, module_name: str, record: PluginRecord | None = None) -> str:
        """Import a plugin module by its dotted name and add it."""
        module = importlib.import_module(module_name)
        return self.add_plugin(module, name=module_name, record=record)

    def _register_callback(
        self, kind: str, plugin: str, staged: dict[tuple[str, str], Entry],
        record: PluginRecord | None = None,
    ) -> Callable[..., None]:
        def register(
            name: str, factory: Callable[..., Any] | str, *, summary: str | None = None,
            override: bool = False, defaults: dict[str, Any] | None = None,
        ) -> None:
            if defaults is not None and (kind != "dataset" or not isinstance(defaults, dict)):
                raise RegistrationError(
                    f"plugin {plugin!r} registered {kind} {name!r} with defaults={defaults!r}: "
                    f"defaults are a dict of settings, for a dataset only"
                )
            if isinstance(factory, str):  # "module:attr": checked when first imported
                if not _TARGET.match(factory) or not summary:
                    raise RegistrationError(
                        f"plugin {plugin!r} registered {kind} {name!r} as {factory!r}: a factory "
                        f"given by path must be 'module:attr' and come with summary='...'"
                    )
                missing = []
            else:
                missing = missing_methods(kind, factory)
            if missing:
                raise RegistrationError(
                    f"plugin {plugin!r} registered {kind} {name!r} without method "
                    f"{', '.join(missing)} required of every {kind}"
                )
            previous = staged.get((kind, name)) or self._entries[kind].get(name)
            if previous is not None and not override:
                raise RegistrationError(
                    f"{kind} {name!r} is registered by both {self._described(previous.plugin)} "
                    f"and {self._described(plugin, record)}; pass override=True in the one "
                    f"meant to replace the other"
                )
            staged[(kind, name)] = Entry(
                kind, name, factory, plugin, summary or first_doc_line(factory), dict(defaults or {})
            )

        return register

    def _described(self, plugin: str, record: PluginRecord | None = None) -> str:
        """`'extras' (entry point nn-scratch-extras 0.1.0)`: a plugin and where it came from."""
        record = record or self.records.get(plugin)
        if record is None or record.source == "python":
            return repr(plugin)
        return f"{plugin!r} ({record.source} {record.origin})".replace(" )", ")")

    # -- lookup ----------------------------------------------------------------------
    def _of_kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise UnknownComponentError("kind", kind, list(KINDS), see="nn-cli list")
        return self._entries[kind]

    def get(self, kind: str, name: str) -> Entry:
        entries = self._of_kind(kind)  # an unknown kind is its own error
        try:
            return entries[name]
        except KeyError:
            raise UnknownComponentError(kind, name, list(entries)) from None

    def find(self, name: str, kinds: Sequence[str] = KINDS, *, hint: str = "") -> Entry:
        """The entry called `name` in whichever of `kinds` has it; an error if none or several do."""
        found = [kind for kind in kinds if name in self._of_kind(kind)]
        if len(found) > 1:
            raise SettingsError(
                f"{name!r} names a component of several kinds: {', '.join(found)}; {hint}"
            )
        if not found:
            known = sorted({n for kind in kinds for n in self._of_kind(kind)})
            what = "component" if set(kinds) == set(KINDS) else " or ".join(kinds)
            raise UnknownComponentError(what, name, known, see="nn-cli list")
        return self._entries[found[0]][name]

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        return self.get(kind, name).create(**kwargs)

    def names(self, kind: str) -> list[str]:
        return sorted(self._of_kind(kind))

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in self.names(k)]


def error_line(error: BaseException) -> str:
    """`ValueError: bad alpha`: the last line of how Python would print the error."""
    return traceback.format_exception_only(error)[-1].strip()


def _validation_line(plugin: str, error: pluggy.PluginValidationError) -> str:
    """pluggy's several-line validation message as one line that names the plugin."""
    detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (
        f"plugin {plugin!r}: pluggy refuses its hook: {detail} "
        f"(every hook is register_<kinds>(register): {', '.join(HOOKS.values())})"
    )


def builtin_manifest() -> Path:
    """Where the built-in `registry.toml` lies: beside `core/` in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parents[1]  # core/
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
    version = _own_version()
    for module_name in read_manifest(builtin_manifest()):
        record = PluginRecord(module_name, "builtin", "nn-scratch", "nn-scratch", version)
        registry.add_module(module_name, record)
    return registry


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("nn-scratch")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return None
