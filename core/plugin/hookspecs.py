"""The hooks a plugin implements: one per kind of component.

Each hook receives a `register` callback and calls it once per component:

    register(name, factory, *, summary=None, override=False, defaults=None)

`factory(**kwargs)` builds the component; `summary` defaults to the first line of the
factory's docstring; `override=True` replaces a component of the same kind and name that
another plugin registered; `defaults` is for datasets only (see `register_datasets`). `factory` may instead be a "module:attr" path, with a `summary`: the
module is then imported only when the component is built or described (`nn-cli info`),
never for `nn-cli list`. A plugin implements only the hooks for the kinds it provides.
"""

from __future__ import annotations

import pluggy

PROJECT = "nn"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_layers(register):
    """Register Module factories with parameters, e.g. `register("linear", Linear)`.

    The assembler passes `in_features` (inferred from the layer before), and `generator`,
    `dtype` and `init` when the factory's signature names them.
    """


@hookspec
def register_activations(register):
    """Register parameter-free Module factories, e.g. `register("tanh", Tanh)`."""


@hookspec
def register_losses(register):
    """Register Loss factories, e.g. `register("mse", MSELoss)`."""


@hookspec
def register_initializers(register):
    """Register Initializer factories, e.g. `register("he", HeGaussian)`."""


@hookspec
def register_optimizers(register):
    """Register Optimizer factories: `factory(parameters, lr=..., **options)`."""


@hookspec
def register_datasets(register):
    """Register Dataset factories, e.g. `register("moons", moons)`.

    The factory returns a `core.Dataset` (core/data/dataset.py: the tensors, the task, the
    feature names, the input shape and the class names). Its keyword parameters are the
    options of `--data name:key=value,...`; `generator` (seeded from the run's seed),
    `n_train`, `n_test`, `dtype` and `target` are passed when its signature names them.

    `defaults`, a dict of TrainSettings fields, suits a run to the data
    (`register("digits", digits, defaults={"act": "relu", "hidden": (256,), "epochs": 40})`):
    they apply to every field the user does not give (core/pipeline/resolve.py); a
    dataset's defaults that set no loss leave it to the task's (bce, cross_entropy, mse).
    """
