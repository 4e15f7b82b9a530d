"""Memory estimates: a run that cannot fit is refused before it allocates, naming the setting.

The estimates are cheap upper-bound sketches, not measurements: the network is built without
its values (`core.network.assemble.shapes_only`: on torch's "meta" device, shapes and no
storage, or for a small network on the CPU with zero weights) and the bytes
counted from its parameters and the width of each module's output. They are compared with
the memory this process may use (MemAvailable, and the cgroup's limit when there is one);
where that is unknown nothing is refused and an allocation failure is still turned into
one line by the CLI.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from core.errors import SettingsError
from core.network.protocols import evaluating
from core.network.sequential import Sequential

# Per parameter: the value, its gradient, and up to two optimizer slots (Adam's moments).
COPIES_PER_PARAMETER = 4
# Per activation: the output, and the cache its module keeps for backward.
COPIES_PER_ACTIVATION = 2


def available_bytes() -> int | None:
    """Memory this process may still use, or None where the system does not say."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        usage = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(usage))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def shown(n: float) -> str:
    """Bytes for a message: '1.2 GB'."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{math.ceil(n / 1e3)} kB"


def check_fits(parts: dict[str, int], what: str) -> None:
    """Refuse `what` when the sum of `parts` (setting -> bytes it costs) exceeds the memory.

    The message names the setting that costs the most: the one to lower.
    """
    need, available = sum(parts.values()), available_bytes()
    if available is None or need <= available:
        return
    largest = max(parts, key=parts.get)
    raise SettingsError(
        f"{what} needs about {shown(need)} of memory, {shown(parts[largest])} of it for "
        f"{largest}; about {shown(available)} is available: lower {largest}"
    )


def data_bytes(points: int, in_features: int) -> int:
    """Points drawn or read in float64, converted, standardised: a few copies of each."""
    return 4 * points * (in_features + 1) * 8


def output_widths(model: Sequential, in_features: int, dtype: torch.dtype,
                  device: torch.device | str) -> list[int]:
    """The number of values each module outputs for one sample, found by a one-row forward.

    `in_features` is the width of a row; a model that reshapes rows to images
    (`Sequential.input_shape`) gets the row as one image, as its forward would. The probe
    runs in evaluation mode: no running statistic moves, no dropout mask is drawn.
    """
    shape = model.input_shape or (in_features,)
    x = torch.zeros(1, *shape, dtype=dtype, device=device)  # (1, *sample)
    widths = []
    with evaluating(model):
        for y in model.outputs(x):  # each module's output, (1, *output)
            widths.append(math.prod(y.shape[1:]))
    return widths


def parameter_bytes(model: Sequential) -> int:
    return sum(p.value.numel() * p.value.element_size() for p in model.parameters())


def network_bytes(model: Sequential, in_features: int, rows: int, dtype: torch.dtype,
                  device: torch.device | str) -> tuple[int, int]:
    """(bytes of the parameters with their gradients and optimizer state,
    bytes of the activations of `rows` rows through the network)."""
    size = torch.empty((), dtype=dtype).element_size()
    widths = output_widths(model, in_features, dtype, device)
    return (COPIES_PER_PARAMETER * parameter_bytes(model),
            COPIES_PER_ACTIVATION * rows * sum(widths) * size)


def check_run_fits(
    shapes: Sequential | None, dtype: torch.dtype, sizes: dict[str, int], size_option: str,
    runs: int = 1, in_features: int = 2,
) -> None:
    """Refuse a run that cannot fit in memory before it allocates, naming what to lower.

    `shapes` is the run's network built without its values (`shapes_only`; None: count the
    data alone), `in_features` the width of a row (the product of an image's shape),
    `sizes` the points of each set by the setting that gives them (n_train, n_test), and
    `size_option` the option that sizes the network (--hidden or --layers); `runs` networks
    trained together (an ensemble) each need their own weights and activations.
    """
    from core.network.assemble import probe_device

    network, per_point = (0, 0) if shapes is None else network_bytes(
        shapes, in_features, 1, dtype, probe_device(shapes))
    per_point = runs * per_point + data_bytes(1, in_features)
    check_fits({  # every training point goes through at once
        size_option if runs == 1 else f"{size_option} or --runs": runs * network,
        **{name: points * per_point for name, points in sizes.items()},
    }, "this run" if runs == 1 else f"these {runs} runs")
