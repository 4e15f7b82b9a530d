"""Finding plugins: the built-in set, installed packages, a user's registry.toml, --plugin.

`load_registry()` is the one function every command calls. The order, each step adding
to what the one before registered:

1. the built-in set that the shipped `registry.toml` lists (a failure here is a bug: fatal);
2. installed distributions' entry points in the group `nn_scratch`
   (`[project.entry-points.nn_scratch]`), unless `autoload=False` or the environment
   sets `NN_DISABLE_PLUGIN_AUTOLOAD=1`;
3. the user's `registry.toml`: `registry_file`, else `./registry.toml` when there is one
   (and it is not the built-in manifest itself); its `[plugins] modules` list holds module
   names (imported with the file's folder on sys.path) and `.py` paths (relative to it);
4. `plugins`: module names or `.py` paths (`nn-cli --plugin`), in the order given.

A name already taken stays with the plugin that took it first unless the later one
registers with `override=True`. A plugin that fails (its import raises, a hook raises, a
hook is malformed, a component is refused) is skipped whole: its `PluginRecord` keeps the
error, `on_error(record)` is called once for it, and every other plugin keeps working.
With `strict=True` (or `NN_STRICT_PLUGINS=1`) the first failure raises `PluginError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from core.errors import NNError, PluginError, SettingsError
from core.plugin.registry import (
    PluginRecord, Registry, builtin_manifest, default_registry, error_line, read_manifest,
)

ENTRY_POINT_GROUP = "nn_scratch"
DISABLE_AUTOLOAD_ENV = "NN_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "NN_STRICT_PLUGINS"


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def load_registry(
    plugins: Sequence[str] = (),
    registry_file: str | Path | None = None,
    *,
    strict: bool = False,
    autoload: bool | None = None,
    on_error: Callable[[PluginRecord], None] | None = None,
    cwd: str | Path | None = None,
) -> Registry:
    """The built-ins plus every plugin found, in the order the module docstring gives.

    `strict` is also turned on by NN_STRICT_PLUGINS=1; `autoload=None` means "unless
    NN_DISABLE_PLUGIN_AUTOLOAD=1". `cwd` is where `./registry.toml` is looked for.
    """
    strict = strict or env_flag(STRICT_ENV)
    autoload = not env_flag(DISABLE_AUTOLOAD_ENV) if autoload is None else autoload
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    registry = default_registry()
    loader = _Loader(registry, strict, on_error)
    if autoload:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            loader.entry_point(entry_point)
    manifest = _user_manifest(registry_file, cwd)
    if manifest is not None:
        loader.manifest(manifest)
    for spec in plugins:
        loader.one(spec, "--plugin", "", base=cwd)
    return registry


def _user_manifest(registry_file: str | Path | None, cwd: Path) -> Path | None:
    if registry_file is not None:
        path = cwd / registry_file  # an absolute path stays as it is
        if not path.is_file():
            raise SettingsError(f"registry file {str(registry_file)!r} does not exist; "
                                f"give the path of a registry.toml")
        return path.resolve()
    path = cwd / "registry.toml"
    if not path.is_file() or path.resolve() == builtin_manifest().resolve():
        return None  # none here, or the checkout's own manifest of the built-ins
    return path.resolve()


class _Loader:
    """Adds plugins one at a time, each failure isolated, reported and recorded."""

    def __init__(self, registry: Registry, strict: bool, on_error):
        self.registry, self.strict, self.on_error = registry, strict, on_error

    def entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        dist = entry_point.dist
        record = PluginRecord(
            entry_point.name, "entry point",
            f"{dist.name} {dist.version}" if dist else entry_point.value,
            distribution=dist.name if dist else None, version=dist.version if dist else None,
        )
        self._add(record, entry_point.load)

    def manifest(self, path: Path) -> None:
        try:
            modules = read_manifest(path)
        except Exception as e:  # tomllib's decode error or a malformed [plugins] table
            self._fail(PluginRecord(str(path), "registry.toml", str(path)), e)
            return
        for spec in modules:
            self.one(spec, "registry.toml", str(path), base=path.parent)

    def one(self, spec: str, source: str, origin: str, base: Path) -> None:
        """A module name or a `.py` path (relative to `base`)."""
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = (base / spec).resolve()
            if any(r.path == str(path) for r in self.registry.records.values()):
                return  # the same file given twice
            name = path.stem if path.stem not in self.registry.records else str(path)
            record = PluginRecord(name, source, origin or str(path), path=str(path))
            self._add(record, lambda: _import_file(path, name))
        else:
            if spec in self.registry.records:
                return  # already loaded, e.g. listed in registry.toml and given again
            record = PluginRecord(spec, source, origin or spec)
            self._add(record, lambda: _import_module(spec, base))

    def _add(self, record: PluginRecord, load: Callable[[], object]) -> None:
        try:
            plugin = load()
        except Exception as e:
            self._fail(record, e, "import failed: ")
            return
        record.path = record.path or getattr(plugin, "__file__", None)
        try:
            self.registry.add_plugin(plugin, name=record.name, record=record)
        except NNError as e:
            self._fail(record, e)

    def _fail(self, record: PluginRecord, error: Exception, what: str = "") -> None:
        detail = str(error) if isinstance(error, NNError) else error_line(error)
        prefix = f"plugin {record.name!r}: "
        record.error = what + (detail[len(prefix):] if detail.startswith(prefix) else detail)
        self.registry.records[record.name] = record
        if self.strict:
            raise PluginError(f"{describe_failure(record)} (strict mode: --strict-plugins "
                              f"or {STRICT_ENV}=1)") from error
        if self.on_error is not None:
            self.on_error(record)


def describe_failure(record: PluginRecord) -> str:
    """One line: the plugin, where it came from, and the last line of its error."""
    where = f"{record.source} {record.origin}".strip()
    return f"plugin {record.name!r} ({where}) not loaded: {record.error}"


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Let `import name` find a module beside the user's registry.toml, just for the import."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import_module(name: str, base: Path) -> object:
    with _on_sys_path(base):
        return importlib.import_module(name)


def _import_file(path: Path, name: str) -> object:
    """Import a `.py` file as a module named after it (it need not be on sys.path)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such plugin file: {path}")
    # A name of its own, so that it never shadows (or is shadowed by) an installed module.
    suffix = name if name == path.stem else f"{path.stem}_{abs(hash(name))}"
    module_name = f"nn_scratch_plugin_{suffix}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
