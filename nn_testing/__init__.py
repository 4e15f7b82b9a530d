"""The authoring kit: checks a plugin author runs from their own pytest suite.

    from nn_testing import check_module, check_loss, check_initializer, check_dataset

    def test_my_layer():
        check_module(MyLayer, alpha=0.2)        # a factory and its arguments
        check_module("my_layer")                # or a registered name

Each check builds the component in float64, runs its hand-written backward and compares
it with torch.autograd run over the component's own forward, on random inputs of several
batch sizes, at the parameters' initial values and again at random ones (a backward that
forgets a gain initialised to 1 fails); then it checks that parameter gradients accumulate
until `zero_grad`, that parameters and their gradients have matching shapes, and that a
seed gives the same component twice. A component that declares `supports_runs = True` is
checked on the runs path too: a leading run dimension on every parameter and the input,
and each run computing what the single component computes with that run's parameters. A failure raises `CheckFailed` (an AssertionError) naming the check and
by how much it missed.

NOTE: this package is test tooling, not framework code: it uses torch.autograd as the
oracle, so it lives outside core/ and plugins/, and no framework file may import it
(tests/test_from_scratch.py enforces that).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from core.network.layout import BATCH_INNERMOST, to_batch_first, to_batch_innermost
from core.network.protocols import Parameter, set_training, zero_grad

BATCH_SIZES = (1, 3, 8)
RUNS = 3  # runs in the check of a component that declares supports_runs
TOLERANCE = {torch.float64: (1e-9, 1e-11), torch.float32: (1e-4, 1e-5)}  # (rtol, atol)


class CheckFailed(AssertionError):
    """A kit check failed; the message names the check and by how much."""


def check_module(
    factory_or_name: Callable[..., Any] | str,
    *,
    in_features: int = 4,
    in_shape: Sequence[int] | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    runs: int | None = RUNS,
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> None:
    """Check a layer or activation: backward against autograd, accumulation, shapes, seeds.

    `args` are passed to the factory; `in_features`, `init`, `generator` and `dtype` are
    passed too when its signature names them, as the assembler does (and `out_features=3`
    unless given). The gradients are compared at the parameters' initial values and again
    after moving every parameter to random values (seeded), so a backward that is right
    only at the initial values (a gain of 1, a bias of 0) fails. A component that declares
    `supports_runs = True` is also checked with `runs` runs (None: not): parameters with a
    leading run dimension, input (runs, batch, in_features), each run equal to the single
    component holding that run's parameters.

    Images: `in_shape=(3, 7, 9)` makes the input (batch, *in_shape) instead of
    (batch, in_features); `in_channels` (its first size) and `in_shape` are passed too when
    the signature names them, and `in_features` is its last size. A module with modes (an
    optional `train(mode)`) is checked in training and in evaluation. A module that keeps a
    torch.Generator (dropout; a list of them with runs) has it replayed, so autograd and
    the hand-written backward see the same random draws. An image layer that takes a
    `layout` is checked twice: as built by hand (images batch-first), and built as a
    network builds it, batch-innermost (core/network/layout.py), its input converted from
    and its output and gradient back to batch-first at its edges.
    """
    factory, label = _resolve(factory_or_name, ("layer", "activation"), registry)
    sample = (in_features,) if in_shape is None else tuple(in_shape)
    layouts = [None]
    if len(sample) == 3 and "layout" in _signature(factory):
        layouts.append(BATCH_INNERMOST)
    for layout in layouts:
        where = label if layout is None else f"{label} (batch-innermost)"
        _check_module_in(factory, where, sample, batch_sizes, runs, seed,
                         args if layout is None else {**args, "layout": layout})


def _check_module_in(factory, label, sample, batch_sizes, runs, seed, args) -> None:
    """check_module's checks for one way of building the module."""
    module = _build_module(factory, sample, seed, args)
    params = module.parameters()
    _check_parameter_shapes(params, label)
    initial = [p.value.clone() for p in params]
    dtype = params[0].value.dtype if params else torch.float64
    generator = torch.Generator().manual_seed(seed + 1)
    shapes = [(batch, *sample) for batch in batch_sizes]
    for mode in _modes(module):
        where = _mode_text(mode)
        set_training(module, mode)
        for p, value in zip(params, initial):
            p.value.copy_(value)
        x, upstream = _check_gradients(module, params, shapes, dtype, generator, label, where)
        if params:
            _randomize(params, generator)
            x, upstream = _check_gradients(module, params, shapes, dtype, generator, label,
                                           ", random parameters" + where)
            _check_accumulation(module, params, x, upstream, label)
    again = _build_module(factory, sample, seed, args)
    for p, q, value in zip(params, again.parameters(), initial, strict=True):
        _expect(torch.equal(value, q.value), label, "determinism under a seed",
                f"{_pname(p)} differs between two builds with seed {seed}: max "
                f"{(value - q.value).abs().max().item():.3g}")
    if runs is not None and getattr(factory, "supports_runs", False):
        _check_runs(factory, label, sample, batch_sizes, runs, seed, args, generator)


class _BatchFirstEdges:
    """A batch-innermost image layer seen batch-first, as the kit's inputs are: its input
    converted to (..., c, h, w, batch), its image output and its input gradient back."""

    def __init__(self, module: Any):
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module.forward(to_batch_innermost(x))
        return to_batch_first(y) if y.dim() >= 4 else y  # features: (..., batch, n) as they are

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        g = to_batch_innermost(grad_output) if grad_output.dim() >= 4 else grad_output
        return to_batch_first(self.module.backward(g))

    def __getattr__(self, name: str) -> Any:  # parameters, train, buffers, ...
        return getattr(self.module, name)


def _modes(module: Any) -> list[bool | None]:
    return [True, False] if callable(getattr(module, "train", None)) else [None]


def _mode_text(mode: bool | None) -> str:
    return "" if mode is None else (", in training" if mode else ", in evaluation")


def _generator_states(module: Any) -> list[tuple[torch.Generator, torch.Tensor]]:
    """Every torch.Generator the module keeps (alone or in a list) with its state, to replay draws."""
    found = []
    for value in vars(module).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, torch.Generator) and all(item is not g for g, _ in found):
                found.append((item, item.get_state()))
    return found


def _restore(states: list[tuple[torch.Generator, torch.Tensor]]) -> None:
    for generator, state in states:
        generator.set_state(state)


def _check_parameter_shapes(params: list[Parameter], label: str) -> None:
    for p in params:
        _expect(tuple(p.grad.shape) == tuple(p.value.shape), label, "parameter shapes",
                f"{_pname(p)} has value {tuple(p.value.shape)} but grad {tuple(p.grad.shape)}")
        _expect(p.grad.dtype == p.value.dtype, label, "parameter shapes",
                f"{_pname(p)} has value {p.value.dtype} but grad {p.grad.dtype}")


def _randomize(params: list[Parameter], generator: torch.Generator) -> None:
    """Move every parameter to random values: its own plus a standard normal draw."""
    for p in params:
        p.value.add_(torch.randn(p.value.shape, generator=generator, dtype=p.value.dtype))


def _check_gradients(module, params, shapes, dtype, generator, label: str, where: str, lead: int = 1):
    """Forward and backward against autograd for an input of each shape; the last input
    and upstream gradient come back for the checks that follow. `lead`: the dimensions
    before a sample's own (the batch; the runs and the batch)."""
    for shape in shapes:
        batch = ", ".join(f"{n} runs" for n in shape[:lead - 1]) + (", " if lead > 1 else "")
        batch += f"batch {shape[lead - 1]}{where}"
        x = torch.randn(shape, generator=generator, dtype=dtype)  # (..., batch, *sample)
        zero_grad(module)
        replay = _generator_states(module)
        expected_out, expected_grads = _autograd(module, params, x, generator)
        upstream = expected_grads.pop("upstream")
        _restore(replay)
        out = module.forward(x)
        if shape is shapes[-1]:
            _restore(replay)  # the accumulation check replays this last forward's draws
        _expect(tuple(out.shape[:lead]) == tuple(x.shape[:lead]), label, "output shape",
                f"{tuple(x.shape)} in, {tuple(out.shape)} out: the dimensions before the "
                f"sample's own must stay ({', '.join(map(str, x.shape[:lead]))}, ...)")
        _close(out, expected_out, label, f"forward is deterministic ({batch})")
        grad_in = module.backward(upstream)
        _expect(tuple(grad_in.shape) == tuple(x.shape), label, "input gradient shape",
                f"input {tuple(x.shape)} but gradient {tuple(grad_in.shape)}")
        _close(grad_in, expected_grads["input"], label, f"input gradient vs autograd ({batch})")
        for i, p in enumerate(params):
            _close(p.grad, expected_grads[i], label, f"{_pname(p)} gradient vs autograd ({batch})")
    return x, upstream


def _check_accumulation(module, params, x, upstream, label: str) -> None:
    """A second backward adds to the first; zero_grad clears both."""
    once = [p.grad.clone() for p in params]
    module.forward(x)
    module.backward(upstream)
    for p, g in zip(params, once):
        _close(p.grad, 2 * g, label, f"{_pname(p)} gradient accumulates over two backwards")
    zero_grad(module)
    for p in params:
        _expect(not p.grad.any(), label, "zero_grad",
                f"{_pname(p)} gradient is {p.grad.abs().max().item():.3g} after zero_grad, not 0")


def _check_runs(factory, label, sample, batch_sizes, runs, seed, args, generator) -> None:
    """The runs path: `runs` copies with a leading run dimension, each its own component."""
    takes_runs = "runs" in _signature(factory)
    batched = _build_module(factory, sample, seed, {"runs": runs, **args} if takes_runs else args)
    single = _build_module(factory, sample, seed, args)
    params, singles = batched.parameters(), single.parameters()
    _expect(len(params) == len(singles), label, "run dimension",
            f"{len(params)} parameters with runs={runs}, {len(singles)} without")
    for p, q in zip(params, singles):
        _expect(tuple(p.value.shape) == (runs, *q.value.shape), label, "run dimension",
                f"{_pname(p)} is {tuple(p.value.shape)} with runs={runs}; expected "
                f"{(runs, *q.value.shape)}, the single run's shape after a leading run dimension")
    _check_parameter_shapes(params, label)
    _randomize(params, generator)
    dtype = params[0].value.dtype if params else torch.float64
    shapes = [(runs, batch, *sample) for batch in batch_sizes]
    for mode in _modes(batched):
        set_training(batched, mode)
        set_training(single, mode)
        x, upstream = _check_gradients(batched, params, shapes, dtype, generator, label,
                                       _mode_text(mode), lead=2)
        if params:
            _check_accumulation(batched, params, x, upstream, label)
        if mode and _generator_states(batched):
            continue  # random draws: the runs and the single component draw different masks
        out = batched.forward(x)  # (runs, batch, ...)
        for r in range(runs):  # run r is the single component holding run r's parameters
            for p, q in zip(params, singles):
                q.value.copy_(p.value[r])
            for name, buffer in _buffers(single).items():  # running statistics
                buffer.copy_(_buffers(batched)[name][r])
            _close(out[r], single.forward(x[r]), label,
                   f"run {r} of {runs} equals a single run{_mode_text(mode)}")


def _buffers(module: Any) -> dict[str, torch.Tensor]:
    named = getattr(module, "buffers", None)
    return dict(named()) if callable(named) else {}


def check_loss(
    factory_or_name: Callable[..., Any] | str,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    out_features: Sequence[int] = (1, 3),
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> None:
    """Check a loss: a 0-dim value, and backward against autograd on 0/1 targets."""
    factory, label = _resolve(factory_or_name, ("loss",), registry)
    loss = factory(**args)
    generator = torch.Generator().manual_seed(seed)
    for batch in batch_sizes:
        for width in out_features:
            where = f"batch {batch}, {width} outputs"
            prediction = torch.randn(batch, width, generator=generator, dtype=torch.float64) * 2
            target = (torch.rand(batch, width, generator=generator, dtype=torch.float64) > 0.5).double()
            leaf = prediction.clone().requires_grad_(True)
            with torch.enable_grad():
                expected = loss.forward(leaf, target)
                _expect(expected.dim() == 0, label, "scalar value",
                        f"forward returned shape {tuple(expected.shape)} ({where}), not a 0-dim tensor")
                (expected_grad,) = torch.autograd.grad(expected, leaf)
            value = loss.forward(prediction, target)
            _close(value, expected.detach(), label, f"forward is deterministic ({where})")
            _close(loss.backward(), expected_grad, label, f"prediction gradient vs autograd ({where})")


def check_initializer(
    factory_or_name: Callable[..., Any] | str,
    *,
    shapes: Sequence[tuple[int, int]] = ((2, 25), (25, 25), (25, 1)),
    registry: Any = None,
    seed: int = 0,
    **args: Any,
) -> None:
    """Check an initializer: it fills every element with a finite number, the same under a seed."""
    factory, label = _resolve(factory_or_name, ("initializer",), registry)
    init = factory(**args)
    for fan_in, fan_out in shapes:
        for dtype in (torch.float32, torch.float64):
            weights = []
            for _ in range(2):
                weight = torch.full((fan_in, fan_out), float("nan"), dtype=dtype)
                init(weight, fan_in, fan_out, torch.Generator().manual_seed(seed))
                where = f"({fan_in}, {fan_out}) {dtype}"
                _expect(tuple(weight.shape) == (fan_in, fan_out) and weight.dtype == dtype,
                        label, "shape", f"{where} became {tuple(weight.shape)} {weight.dtype}")
                bad = (~torch.isfinite(weight)).sum().item()
                _expect(bad == 0, label, "finiteness",
                        f"{bad} of {weight.numel()} elements of {where} are not finite (or not filled)")
                weights.append(weight)
            _expect(torch.equal(*weights), label, "determinism under a seed",
                    f"{where}: two fills with seed {seed} differ by up to "
                    f"{(weights[0] - weights[1]).abs().max().item():.3g}")


def check_dataset(
    factory_or_name: Callable[..., Any] | str,
    *,
    registry: Any = None,
    seed: int = 0,
    **options: Any,
) -> None:
    """Check a dataset: it returns a `core.Dataset` whose tensors keep the contract.

    Builds it as the pipeline does (its options, plus `generator`, `n_train`, `n_test` and
    `dtype` when its signature names them) and checks, each as a named check: the shapes
    and dtypes of x and y, labels within the class names, finite values, feature names and
    input shape consistent with the columns, the task's class count, and the same seed
    giving the same tensors twice.
    """
    from core import Dataset
    from core.data.dataset import build_from_factory, dataset_problems

    factory, label = _resolve(factory_or_name, ("dataset",), registry)
    built = [build_from_factory(factory, options, seed=seed, check=False) for _ in range(2)]
    data = built[0]
    _expect(isinstance(data, Dataset), label, "returns a Dataset",
            f"the factory returned {type(data).__name__}, not core.Dataset")
    for problem in dataset_problems(data):
        _expect(False, label, "contract", problem)
    _expect(len(data.x_train) > 0, label, "contract", "x_train has no rows")
    if data.task != "regression":
        present = torch.bincount(data.y_train, minlength=data.n_classes)  # (classes,)
        _expect(bool((present > 0).sum() >= 2), label, "classes",
                f"the training labels hold {(present > 0).sum().item()} class(es); at least 2 are needed")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(built[0], name), getattr(built[1], name)
        _expect((a is None) == (b is None) and (a is None or torch.equal(a, b)), label,
                "determinism under a seed", f"{name} differs between two builds with seed {seed}")
    _expect(built[0].metadata() == built[1].metadata(), label, "determinism under a seed",
            "the metadata differs between two builds")


# -- helpers -------------------------------------------------------------------------
def _resolve(factory_or_name: Any, kinds: tuple[str, ...], registry: Any) -> tuple[Any, str]:
    if not isinstance(factory_or_name, str):
        return factory_or_name, getattr(factory_or_name, "__name__", repr(factory_or_name))
    if registry is None:
        from core.plugin.discovery import load_registry

        registry = load_registry()
    for kind in kinds:
        if factory_or_name in registry.names(kind):
            return registry.get(kind, factory_or_name).factory, factory_or_name
    return registry.get(kinds[0], factory_or_name).factory, factory_or_name  # raises, listing names


def _gaussian(weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator) -> None:
    """The kit's own initializer, so a layer is checked without any registered one."""
    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) / fan_in**0.5)


def _signature(factory: Any) -> Any:
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}


def _build_module(factory: Any, sample: tuple[int, ...], seed: int, args: dict[str, Any]) -> Any:
    accepted = _signature(factory)
    context = {"in_features": sample[-1], "in_channels": sample[0], "in_shape": sample,
               "out_features": 3, "init": _gaussian,
               "generator": torch.Generator().manual_seed(seed), "dtype": torch.float64}
    kwargs = dict(args)
    for key, value in context.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    module = factory(**kwargs)
    return _BatchFirstEdges(module) if kwargs.get("layout") == BATCH_INNERMOST else module


def _autograd(module: Any, params: list[Parameter], x: torch.Tensor, generator: torch.Generator):
    """Output and gradients (input, each parameter) of the module's own forward, by autograd."""
    leaf = x.clone().requires_grad_(True)
    originals = [p.value for p in params]
    try:
        with torch.enable_grad():
            for p in params:  # differentiate with respect to a leaf copy of each parameter
                p.value = p.value.detach().clone().requires_grad_(True)
            out = module.forward(leaf)
            upstream = torch.randn(out.shape, generator=generator, dtype=out.dtype)
            grads = torch.autograd.grad(out, [leaf, *(p.value for p in params)], upstream,
                                        allow_unused=True)
    finally:
        for p, value in zip(params, originals):
            p.value = value
    result: dict[Any, torch.Tensor] = {"upstream": upstream, "input": _or_zeros(grads[0], leaf)}
    for i, (g, value) in enumerate(zip(grads[1:], originals)):
        result[i] = _or_zeros(g, value)
    return out.detach(), result


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _pname(p: Parameter) -> str:
    return p.name or "a parameter"


def _expect(ok: bool, label: str, check: str, detail: str) -> None:
    if not ok:
        raise CheckFailed(f"{label}: check failed: {check}: {detail}")


def _close(actual: torch.Tensor, expected: torch.Tensor, label: str, check: str) -> None:
    _expect(tuple(actual.shape) == tuple(expected.shape), label, check,
            f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    rtol, atol = TOLERANCE.get(expected.dtype, TOLERANCE[torch.float32])
    error = (actual.to(expected.dtype) - expected).abs()  # same shape as expected
    allowed = atol + rtol * expected.abs()
    if not bool((error <= allowed).all()):
        worst = int((error - allowed).argmax())
        scale = expected.abs().max().item()
        raise CheckFailed(
            f"{label}: check failed: {check}: off by up to {error.max().item():.3g} "
            f"(largest reference value {scale:.3g}, so {error.max().item() / max(scale, 1e-300):.3g} "
            f"relative; allowed {atol:g} + {rtol:g} x |reference|); at flat index {worst}: "
            f"got {actual.flatten()[worst].item():.6g}, autograd {expected.flatten()[worst].item():.6g}"
        )
