"""Speed and memory of this framework against torch.nn + autograd + torch.optim, side by side.

    python bench/speed.py            # the full run whose results are in bench/README.md
    python bench/speed.py --quick    # a fast sanity run (fewer steps and repeats)
    python bench/speed.py --only step,ensemble --device cpu

Everything runs in this one process. The step and ensemble sections train the report's
network with the report's recipe, pinned (2-25-25-25-1, tanh, MSE, plain SGD lr 0.1, raw
inputs, float32; the CLI's defaults differ), on the same data, the same initial weights
and the same batches for both sides. Times are medians over repeats, taken in alternation, and each
ratio compares figures measured in the same run (the machine may be shared and noisy).

Sections:
  step      time per training step and peak memory, batch 1, 10, 100, 1000; one thread and
            the default thread count on the CPU; and on CUDA when present
  ensemble  the 30-run experiment (batch 10; one thread on the CPU): ours as one batched
            ensemble, ours one run at a time, 30 sequential torch.nn runs, and torch.func's
            vmap ensemble (stacked parameters, vmap over grad) of the same 30 models on the
            same batches
  sklearn   the default single run (`nn-cli train`, seeds 0-4), whole, against the time
            scikit-learn's MLPClassifier of the same shape needs to reach the same test
            error, with its own defaults and with ours (needs: pip install -e '.[bench]')

Peak memory is the peak of live tensor storage while one side builds its model and
optimizer and trains two epochs, from the allocator events of torch.profiler (CPU) or
torch.cuda.max_memory_allocated (CUDA), over what was live before. It counts every tensor
either side allocates (weights, gradients, activations kept for backward, the epoch's
shuffled data, temporaries); it does not count autograd's graph nodes, which are not
tensors, so it understates torch.nn's memory if anything.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch

from core import TrainSettings, build_mlp, default_registry, disk_dataset, fit, train, train_ensemble
from core.pipeline.prepare import prepare
from core.pipeline.resolve import EVERY_FIELD, generator, resolve

HIDDEN, LR, N = [25, 25, 25], 0.1, 1000
BATCHES = (1, 10, 100, 1000)
BATCH_OF_30_RUNS = 10  # the 30-run experiment: the report's batch size


# -- the two sides ---------------------------------------------------------------------------

def torch_twin(ours) -> torch.nn.Sequential:
    """torch.nn with our network's exact weights (ours: weight (in, out); torch: (out, in))."""
    layers = []
    for module in ours.modules:
        if hasattr(module, "weight"):
            w = module.weight.value
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=w.dtype,
                                     device=w.device)
            with torch.no_grad():
                linear.weight.copy_(w.T)
                linear.bias.copy_(module.bias.value)
            layers.append(linear)
        else:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def torch_fit(model, x, y, *, epochs: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """The same loop as core.training.loop.fit, written the torch.nn way: same order, same batches."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        xs, ys = x[order], y[order]  # (n, 2), (n, 1): batches are views, as in ours
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, n, batch_size):
            xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * xb.shape[0]  # no sync per step, as in ours
    return total


def ours_model(registry, device, seed=1):
    return build_mlp(registry, 2, HIDDEN, 1, activation="tanh", init="xavier",
                     generator=torch.Generator().manual_seed(seed), device=device)


def ours_fit(registry, model, x, y, *, epochs, batch_size, gen):
    loss = registry.create("loss", "mse")
    sgd = registry.create("optimizer", "sgd", parameters=model.parameters(), lr=LR)
    return fit(model, loss, sgd, x, y, epochs=epochs, batch_size=batch_size, generator=gen)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def weight_gap(ours, theirs) -> float:
    """Largest |difference| between the two sides' final weights."""
    mine = [p.value for p in ours.parameters()]
    other = []
    for layer in theirs:
        if isinstance(layer, torch.nn.Linear):
            other += [layer.weight.detach().T, layer.bias.detach()]
    return max((a - b).abs().max().item() for a, b in zip(mine, other, strict=True))


# -- peak memory -----------------------------------------------------------------------------

def peak_bytes(fn: Callable[[], object], device) -> int:
    """Peak live tensor bytes while `fn` runs, above what was live when it started."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# -- sections --------------------------------------------------------------------------------

def bench_step(registry, device, threads: int, quick: bool) -> None:
    torch.set_num_threads(threads)
    target_steps, repeats = (60, 3) if quick else (400, 9) if threads == 1 else (200, 5)
    x, y = disk_dataset(N, torch.Generator().manual_seed(0))
    x, y = x.to(device), y.to(device)
    where = f"{device.type}" + (f", {threads} thread{'s' * (threads > 1)}" if device.type == "cpu" else "")
    print(f"\n### Training step ({where})\n")
    print("| batch | ours µs/step | torch.nn µs/step | speed-up | ours peak KiB | torch.nn peak KiB "
          "| memory ratio | max weight gap |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for batch in BATCHES:
        steps_per_epoch = math.ceil(N / batch)
        epochs = max(1, math.ceil(target_steps / steps_per_epoch))
        steps = epochs * steps_per_epoch

        def run_ours():
            model = ours_model(registry, device)
            ours_fit(registry, model, x, y, epochs=epochs, batch_size=batch,
                     gen=torch.Generator().manual_seed(2))
            return model

        def run_torch():
            model = torch_twin(ours_model(registry, device))
            torch_fit(model, x, y, epochs=epochs, batch_size=batch,
                      gen=torch.Generator().manual_seed(2))
            return model

        gap = weight_gap(run_ours(), run_torch())  # also the warm-up
        mine, theirs = [], []
        for _ in range(repeats):  # alternate, so both see the same load
            model = ours_model(registry, device)
            mine.append(timed(lambda: ours_fit(registry, model, x, y, epochs=epochs,
                                               batch_size=batch,
                                               gen=torch.Generator().manual_seed(2)), device))
            twin = torch_twin(ours_model(registry, device))
            theirs.append(timed(lambda: torch_fit(twin, x, y, epochs=epochs, batch_size=batch,
                                                  gen=torch.Generator().manual_seed(2)), device))
        a, b = statistics.median(mine) / steps * 1e6, statistics.median(theirs) / steps * 1e6

        initial = ours_model(registry, device)  # the weights both start from, made beforehand
        memory_ours = peak_bytes(lambda: ours_fit(
            registry, ours_model(registry, device), x, y, epochs=2, batch_size=batch,
            gen=torch.Generator().manual_seed(2)), device)
        memory_torch = peak_bytes(lambda: torch_fit(
            torch_twin(initial), x, y, epochs=2, batch_size=batch,
            gen=torch.Generator().manual_seed(2)), device)
        print(f"| {batch} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {memory_ours / 1024:.1f} | "
              f"{memory_torch / 1024:.1f} | {memory_ours / memory_torch:.2f} | {gap:.1e} |",
              flush=True)


def data_of(settings):
    """The run's data as `nn-cli train` prepares it (the settings whole: no default applied)."""
    return prepare(resolve(settings, None, EVERY_FIELD), check=False).data


def network_of(settings, registry):
    """The run's network, its weights drawn from the seed, as `train` builds it."""
    return prepare(resolve(settings, registry, EVERY_FIELD), registry, check=False).model


def torch_sequential(runs, data, epochs, device):
    """30 torch.nn runs one after another, each on its own seed's data, weights and batches."""
    registry = default_registry()
    models = []
    for run, d in zip(runs, data):
        model = torch_twin(network_of(run, registry))
        torch_fit(model, d.x_train, d.y_train, epochs=epochs, batch_size=run.batch_size,
                  gen=generator(run, "shuffle"))
        models.append(model)
    return models


def torch_vmap(runs, data, epochs, device):
    """torch.func's way: stacked parameters, vmap over grad, on the same per-run batches."""
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    registry = default_registry()
    twins = [torch_twin(network_of(run, registry)) for run in runs]
    params, _ = stack_module_state(twins)
    params = {k: v.detach() for k, v in params.items()}  # (runs, ...) each
    base = copy.deepcopy(twins[0]).to("meta")

    def loss_of(p, xb, yb):
        return torch.nn.functional.mse_loss(functional_call(base, p, (xb,)), yb)

    step = vmap(grad_and_value(loss_of))
    x = torch.stack([d.x_train for d in data])  # (runs, n, 2)
    y = torch.stack([d.y_train for d in data])  # (runs, n, 1)
    gens = [generator(run, "shuffle") for run in runs]
    n, batch = x.shape[1], runs[0].batch_size
    values = list(params.values())
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        xs = torch.take_along_dim(x, order.unsqueeze(-1), dim=1)  # (runs, n, 2)
        ys = torch.take_along_dim(y, order.unsqueeze(-1), dim=1)  # (runs, n, 1)
        total = torch.zeros(len(runs), dtype=torch.float64, device=device)
        for start in range(0, n, batch):
            grads, loss = step(params, xs[:, start : start + batch], ys[:, start : start + batch])
            torch._foreach_add_(values, [grads[k] for k in params], alpha=-LR)
            total += loss * xs[:, start : start + batch].shape[1]
    return params


def bench_ensemble(registry, device, quick: bool) -> None:
    runs_n, epochs, repeats = (30, 1, 1) if quick else (30, 10, 3)
    # The report's recipe on both sides, every setting pinned (not the CLI's defaults):
    # tanh, MSE, batch 10, plain SGD at lr 0.1, raw inputs, constant rate.
    settings = TrainSettings(
        act="tanh", loss="mse", init="xavier", hidden=tuple(HIDDEN), batch_size=BATCH_OF_30_RUNS,
        epochs=epochs, device=device.type, optimizer="sgd", lr=LR, schedule="constant",
        preprocess="none", dtype="float32", n_train=N,
    )
    seeds = list(range(runs_n))
    runs = [dataclasses.replace(settings, seed=s) for s in seeds]
    data = [data_of(run) for run in runs]
    threads = torch.get_num_threads()
    print(f"\n### The {runs_n}-run experiment ({device.type}, {threads} thread{'s' * (threads > 1)}, "
          f"batch {BATCH_OF_30_RUNS}, {epochs} epoch{'s' * (epochs > 1)} of {N // BATCH_OF_30_RUNS} steps per run; "
          f"all sides scale with the epochs)\n")
    sides = {
        "ours, batched ensemble (train_ensemble)": lambda: train_ensemble(settings, seeds, registry),
        "ours, one run at a time (train)": lambda: [train(run, registry) for run in runs],
        "torch.func vmap ensemble": lambda: torch_vmap(runs, data, epochs, device),
        "torch.nn, 30 sequential runs": lambda: torch_sequential(runs, data, epochs, device),
    }
    # The same 30 models: compare run 0's final weights, ours against torch.func's.
    ours_first = train_ensemble(settings, seeds[:1], registry)[0].model
    theirs = torch_vmap(runs[:1], data[:1], epochs, device)
    mine = [p.value for p in ours_first.parameters()]
    other = []
    for i in range(0, 7, 2):
        other += [theirs[f"{i}.weight"][0].T, theirs[f"{i}.bias"][0]]
    gap = max((a - b).abs().max().item() for a, b in zip(mine, other, strict=True))
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(timed(fn, device))
    batched = statistics.median(times["ours, batched ensemble (train_ensemble)"])
    print("| side | seconds | ours batched is faster by |")
    print("|---|---:|---:|")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"| {name} | {t:.2f} | {t / batched:.2f}x |", flush=True)
    print(f"\n(run 0's final weights, ours against torch.func's: max |difference| {gap:.1e})")


def sklearn_time_to_reach(classifier, data, target: float, max_epochs: int) -> tuple[int | None, float]:
    """Train a fresh MLPClassifier one epoch (`partial_fit`) at a time; (epochs or None,
    training seconds) until its test error is at most `target` (the checks are not timed)."""
    import warnings

    from threadpoolctl import threadpool_limits

    x_train, y_train = data.x_train.cpu().numpy(), data.y_train.cpu().numpy().ravel()
    x_test, y_test = data.x_test.cpu().numpy(), data.y_test.cpu().numpy().ravel()
    spent = 0.0
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        for epoch in range(1, max_epochs + 1):
            start = time.perf_counter()
            classifier.partial_fit(x_train, y_train, classes=[0.0, 1.0])  # one epoch
            spent += time.perf_counter() - start
            if (classifier.predict(x_test) != y_test).mean() <= target:  # untimed check
                return epoch, spent
    return None, spent


def bench_sklearn(registry, quick: bool) -> None:
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        print("\n(sklearn section skipped: pip install -e '.[bench]')")
        return

    torch.set_num_threads(1)
    defaults = TrainSettings()
    seeds, repeats, max_epochs = (range(1), 1, 100) if quick else (range(5), 3, 2000)
    # scikit-learn with its own defaults, and with ours as far as it has them (no schedule).
    sides = {
        "its defaults (adam lr 0.001, batch 200, alpha 1e-4)": {},
        f"our settings (adam lr {defaults.lr:g}, batch {defaults.batch_size}, alpha 0, "
        f"no decay)": dict(learning_rate_init=defaults.lr, batch_size=defaults.batch_size,
                           alpha=0.0),
    }
    print("\n### Time to a test error: the default run against scikit-learn (1 thread each)\n")
    print(f"Per seed, the target is the test error of `nn-cli train --seed S` with every other "
          f"setting at its default ({defaults.act}, {defaults.loss}, {defaults.optimizer} lr "
          f"{defaults.lr:g}, {defaults.schedule} decay, {defaults.preprocess} inputs, batch "
          f"{defaults.batch_size}, {defaults.epochs} epochs). Ours is that whole run (data, "
          f"build, every epoch, the errors); scikit-learn's MLPClassifier (25, 25, 25), tanh, "
          f"random_state S, on the same standardised points, counts only its training epochs "
          f"(`partial_fit`), up to the first whose test error (not timed) is at most the "
          f"target. Medians of {repeats} repeat(s) taken in alternation.\n")
    names = list(sides)
    for letter, name in zip("AB", names):
        print(f"- sklearn {letter}: MLPClassifier with {name}")
    print("\n| seed | target | ours: s | sklearn A: epochs, s | sklearn B: epochs, s "
          "| ours faster than A | ours faster than B |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for seed in seeds:
        settings = dataclasses.replace(defaults, seed=seed)
        data = data_of(settings)
        ours, theirs = [], {name: [] for name in names}
        reached: dict[str, int | None] = {}
        target = None
        for _ in range(repeats):
            start = time.perf_counter()
            result = train(settings, registry)
            ours.append(time.perf_counter() - start)
            target = result.test_error  # the same every repeat: the run is seeded
            for name, options in sides.items():
                classifier = MLPClassifier(hidden_layer_sizes=(25, 25, 25), activation="tanh",
                                           random_state=seed, **options)
                reached[name], spent = sklearn_time_to_reach(classifier, data, target, max_epochs)
                theirs[name].append(spent)
        ours_s = statistics.median(ours)
        cells, speedups = [], []
        for name in names:
            t = statistics.median(theirs[name])
            epochs = reached[name] if reached[name] else f"not in {max_epochs}"
            cells.append(f"{epochs}, {t:.2f}")
            ratios[name].append(t / ours_s)
            speedups.append(f"{'' if reached[name] else '>= '}{t / ours_s:.2f}x")  # >=: not reached
        print(f"| {seed} | {target:.2%} | {ours_s:.2f} | " + " | ".join(cells) + " | "
              + " | ".join(speedups) + " |", flush=True)
    for letter, name in zip("AB", names):
        print(f"\nAgainst sklearn {letter} ({name}): ours faster by "
              f"{statistics.median(ratios[name]):.2f}x (median over seeds), "
              f"{min(ratios[name]):.2f}x at worst.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--only", default="step,ensemble,sklearn",
                        help="comma-separated sections: step, ensemble, sklearn")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cpu,cuda (default: cpu, and cuda when present)")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    devices = args.device.split(",") if args.device else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    unknown = [d for d in devices if d not in ("cpu", "cuda")]
    if unknown or ("cuda" in devices and not torch.cuda.is_available()):
        print(f"bench/speed.py: --device {args.device}: "
              + (f"unknown {unknown}, expected cpu and/or cuda" if unknown
                 else f"torch {torch.__version__} finds no CUDA GPU here"), file=sys.stderr)
        sys.exit(2)
    registry = default_registry()
    default_threads = torch.get_num_threads()
    torch.set_grad_enabled(True)  # torch.nn needs autograd; ours turns it off itself
    print(f"# bench/speed.py{' --quick' if args.quick else ''}: torch {torch.__version__}, "
          f"python {sys.version.split()[0]}, {default_threads} default threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    for name in devices:
        device = torch.device(name)
        if "step" in sections:
            for threads in ([1, default_threads] if name == "cpu" else [default_threads]):
                bench_step(registry, device, threads, args.quick)
            torch.set_num_threads(default_threads)
        if "ensemble" in sections:  # one thread on the CPU: the figure a shared box can give
            torch.set_num_threads(1 if name == "cpu" else default_threads)
            bench_ensemble(registry, device, args.quick)
            torch.set_num_threads(default_threads)
    if "sklearn" in sections:
        bench_sklearn(registry, args.quick)


if __name__ == "__main__":
    main()
