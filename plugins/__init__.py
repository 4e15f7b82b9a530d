"""The built-in plugins. Each module is an ordinary pluggy plugin, listed in registry.toml."""
