"""`torch`, imported on first use, so that listing plugins never waits for it.

Importing torch takes over a second; `nn-cli --help`, `list` and `info` need none of it.
A plugin module writes `from core.lazy import torch` instead of `import torch` and uses
`torch.tanh(...)` exactly as before: the real import happens the first time an attribute
is read, typically in the first `forward`. Annotations stay free under
`from __future__ import annotations`; a default argument such as `dtype=torch.float32`
would import torch at definition time, so write `dtype=None` (torch's default dtype).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for a module until one of its attributes is read."""

    def __init__(self, name: str):
        self.__name = name
        self.__copied = False

    def __getattr__(self, attr: str) -> Any:  # only called for names not yet copied in
        module: ModuleType = importlib.import_module(self.__name)
        if not self.__copied:
            # Copy the module's names onto this object once, so that later reads are plain
            # attribute lookups with no call in between (they sit on the training step's path).
            self.__dict__.update(vars(module))
            self.__copied = True
        return getattr(module, attr)  # names the module itself creates lazily come through here

    def __repr__(self) -> str:
        return f"<lazy module {self.__name!r}>"


torch: Any = LazyModule("torch")
