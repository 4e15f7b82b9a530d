"""The plugin machinery: pluggy's hook specifications (`hookimpl`), the `Registry` of components
by kind and name, and discovery (registry.toml, entry points, `--plugins`). It knows no network,
no data and no training: it stores factories and hands them out by name. The lowest room: it may
import only the ground floor (`core.errors`, `core.lazy`) and other modules in this room.
"""
