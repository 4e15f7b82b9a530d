"""The context arguments: what the framework passes a component's factory when its signature
names them, filled in from the run or the layer before and never typed by the user.

One list for every kind. The assembler passes a layer's (core/network/assemble.py), `--layers`
refuses them as typed arguments (core/network/stack.py, save `init=NAME`), the dataset
builder passes a dataset's (core/data/dataset.py), and `nn-cli info` says who fills each.
"""

from __future__ import annotations

STACK = ("layer", "activation")  # the kinds `--layers` names, built by the assembler

# name -> (the kinds of component it is passed to, who fills it)
CONTEXT: dict[str, tuple[tuple[str, ...], str]] = {
    "in_features": (STACK, "inferred from the layer before"),
    "in_channels": (STACK, "inferred from the layer before (an image's channels)"),
    "in_shape": (STACK, "inferred from the layer before (one sample's shape)"),
    "init": (STACK, "the run's --init (or init=NAME in --layers)"),
    "generator": ((*STACK, "dataset"), "the run's seeded generator"),
    "dtype": ((*STACK, "dataset"), "the run's dtype"),
    "device": (STACK, "the run's --device"),
    "runs": (STACK, "the number of runs trained together (None for one)"),
    "layout": (STACK, "chwn (batch-innermost) for images inside a network; nchw called by hand"),
    "parameters": (("optimizer",), "the network's parameters"),
    "n_train": (("dataset",), "the run's n_train"),
    "n_test": (("dataset",), "the run's n_test"),
    "target": (("dataset",), "the run's --target"),
}


def context_arguments(kind: str) -> tuple[str, ...]:
    """The context arguments a factory of `kind` is given when its signature names them."""
    return tuple(name for name, (kinds, _) in CONTEXT.items() if kind in kinds)


def filled_by(name: str) -> str | None:
    """Who fills the parameter `name` when the user does not (None: the user)."""
    return CONTEXT[name][1] if name in CONTEXT else None
