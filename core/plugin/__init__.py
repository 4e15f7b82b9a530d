"""The plugin machinery: pluggy's hook specifications (`hookimpl`), the `Registry` of components
by kind and name, discovery (registry.toml, entry points, `--plugins`) and the context
arguments a factory is given (context). It knows no network, no data and no training: it
stores factories and hands them out by name. The lowest room: it may import only the ground
floor (`core.errors`, `core.lazy`, `core.keyvalue`) and other modules in this room.
"""
