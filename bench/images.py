"""Issue 14's figures: CNNs on digits and the course's denoiser, against torch.nn, in one process.

    python bench/images.py                  # every section (about 20 minutes on 2 busy cores)
    python bench/images.py --only accuracy,denoise
    python bench/images.py --quick          # a sanity run: fewer epochs, seeds and repeats

Sections (seeds 0-4, digits split 75/25 stratified by the pipeline, one thread):
  accuracy  the CNN below (batchnorm, dropout) from `--layers` on digits (Adam 3e-3, batch 32, 30 epochs, cosine
            schedule, standardised pixels): mean test error; beside it torch.nn's same CNN
            from the same initial weights on the same batches, with Adam at a constant 3e-3
            (the issue's reference recipe)
  step      one training step of that CNN (forward, loss, backward, Adam) at batch 32 and
            256: ours against torch.nn + autograd + torch.optim, alternating, medians over
            repeats; and the peak of live tensor memory over 20 steps of each
  layers    each convolution of that CNN alone, forward and backward (conv1 1->16 on 8x8 with
            no input gradient, as the first layer; conv2 16->32 on 4x4), ours batch-innermost
            against torch's F.conv2d + autograd, at batch 32 and 256, medians over repeats
  ensemble  30 runs of the plain CNN (the recipe above, 30 epochs each) as one batched
            ensemble against the same 30 runs one at a time, whole runs (data, training,
            evaluation); and one training step of all 30 both ways
  allocator the CNN's training (`train()`) in a fresh process with glibc's malloc tuned to
            keep freed memory (mallopt, as GLIBC_TUNABLES could) and without: wall time and
            minor page faults, alternating, medians; and the default `nn-cli train` the same way
  denoise   the course's denoiser (`--data denoise`, its default network and settings) and
            the same network in torch.nn from the same weights, batches and learning rates:
            PSNR on the held-out images
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import peak_bytes  # noqa: E402: the same memory measure as bench/speed.py

from core import TrainSettings, default_registry, no_input_grad, train, train_ensemble  # noqa: E402
from core.data.metrics import regression_metrics  # noqa: E402
from core.network.assemble import build_flat_stack  # noqa: E402
from core.pipeline.prepare import prepare  # noqa: E402
from core.pipeline.resolve import EVERY_FIELD, resolve  # noqa: E402
from core.training.schedule import SCHEDULES  # noqa: E402

# The reference CNN, and the same with batchnorm after each convolution and dropout
# before the last layer: the one that reaches the error target, so the one timed.
PLAIN_CNN = ("conv2d:out=16,k=3,pad=1,relu,maxpool2d:k=2,conv2d:out=32,k=3,pad=1,relu,maxpool2d:k=2,"
             "flatten,linear:out=10")
CNN = ("conv2d:out=16,k=3,pad=1,batchnorm,relu,maxpool2d:k=2,conv2d:out=32,k=3,pad=1,batchnorm,relu,"
       "maxpool2d:k=2,flatten,dropout:p=0.3,linear:out=10")
DIGITS = TrainSettings(data="digits", layers=CNN, loss="cross_entropy", optimizer="adam", lr=3e-3,
                       batch_size=32, epochs=30, init="he")
SEEDS = range(5)


def torch_twin(ours) -> torch.nn.Sequential:
    """torch.nn layers holding our network's exact weights (the same layouts as torch's)."""
    layers = []
    for module in ours.modules:
        kind = type(module).__name__
        if kind in ("Conv2d", "ConvTranspose2d"):
            w = module.weight.value
            layer = getattr(torch.nn, kind)(module.in_channels, module.out_channels,
                                            module.kernel_size, module.stride, module.padding,
                                            dtype=w.dtype)
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(module.bias.value)
        elif kind == "Linear":
            w = module.weight.value
            layer = torch.nn.Linear(module.in_features, module.out_features, dtype=w.dtype)
            with torch.no_grad():
                layer.weight.copy_(w.T)  # ours is (in, out)
                layer.bias.copy_(module.bias.value)
        elif kind == "BatchNorm":
            layer = torch.nn.BatchNorm2d(module.channels, module.eps, module.momentum,
                                         dtype=module.weight.value.dtype)
            with torch.no_grad():
                layer.weight.copy_(module.weight.value)
                layer.bias.copy_(module.bias.value)
        elif kind == "Dropout":
            layer = torch.nn.Dropout(module.p)  # torch's own masks: the same rate, other draws
        elif kind == "MaxPool2d":
            layer = torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
        elif kind == "Upsample":
            layer = torch.nn.Upsample(scale_factor=module.scale_factor, mode="nearest")
        else:
            layer = {"ReLU": torch.nn.ReLU, "Sigmoid": torch.nn.Sigmoid, "Flatten": torch.nn.Flatten}[kind]()
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def torch_train(settings, registry, loss_fn, *, schedule: str):
    """torch.nn's run of `settings`: our initial weights, our batches, its own loop."""
    run = prepare(resolve(settings, registry, EVERY_FIELD), registry)
    data, model = run.data, run.model
    shape = model.input_shape
    theirs = torch_twin(model)
    optimizer = torch.optim.Adam(theirs.parameters(), lr=settings.lr)
    shuffle = run.generators["shuffle"]
    x, y = data.x_train.view(-1, *shape), data.y_train
    n = len(x)
    for epoch in range(1, settings.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = SCHEDULES[schedule](settings.lr, epoch, settings.epochs)
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, settings.batch_size):
            rows = order[start:start + settings.batch_size]
            with torch.enable_grad():
                optimizer.zero_grad()
                loss_fn(theirs(x[rows]).flatten(1), y[rows]).backward()
                optimizer.step()
    theirs.eval()
    with torch.no_grad():
        return theirs(data.x_test.view(-1, *shape)).flatten(1), data


def bench_accuracy(registry, quick: bool) -> None:
    epochs = 3 if quick else DIGITS.epochs
    seeds = SEEDS[:2] if quick else SEEDS
    print(f"\n## accuracy: CNN on digits, seeds {seeds[0]}-{seeds[-1]}, {epochs} epochs\n")
    print(f"layers: {CNN}\n")
    ours, theirs = [], []
    for seed in seeds:
        settings = dataclasses.replace(DIGITS, seed=seed, epochs=epochs)
        ours.append(train(settings, registry).test_error)
        out, data = torch_train(settings, registry, torch.nn.functional.cross_entropy,
                                schedule="constant")
        theirs.append((out.argmax(1) != data.labels_test).double().mean().item())
        print(f"seed {seed}: ours {ours[-1]:.2%}   torch.nn {theirs[-1]:.2%}", flush=True)
    print("\n| side | mean test error | std | min | max |\n|---|---|---|---|---|")
    for name, errors in (("ours (--layers, cosine)", ours), ("torch.nn (constant lr)", theirs)):
        std = statistics.stdev(errors) if len(errors) > 1 else 0.0
        print(f"| {name} | {statistics.mean(errors):.2%} | {std:.2%} | {min(errors):.2%} | "
              f"{max(errors):.2%} |")


def bench_step(registry, quick: bool) -> None:
    print("\n## step: one training step of the CNN, one thread\n")
    settings = dataclasses.replace(DIGITS, dtype="float32")
    run = prepare(resolve(settings, registry, EVERY_FIELD), registry)
    data = run.data
    repeats, steps = (5, 5) if quick else (21, 20)
    print("| batch | ours (ms) | torch.nn (ms) | speed-up | ours peak MiB | torch.nn peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for batch in (32, 256):
        x, y = data.x_train[:batch], data.y_train[:batch]
        model = run.build_network()
        theirs = torch_twin(model)
        loss = registry.create("loss", settings.loss)
        optimizer = registry.create("optimizer", "adam", parameters=model.parameters(), lr=settings.lr)
        their_opt = torch.optim.Adam(theirs.parameters(), lr=settings.lr)
        images = x.view(-1, *model.input_shape)

        model.train(), theirs.train()

        ours_steps = our_steps(model, loss, optimizer, x, y, steps)

        def their_steps():
            with torch.enable_grad():
                for _ in range(steps):
                    their_opt.zero_grad()
                    torch.nn.functional.cross_entropy(theirs(images), y).backward()
                    their_opt.step()

        a, b = (t / steps for t in alternating_medians((ours_steps, their_steps), repeats))
        pa, pb = peak_bytes(ours_steps, torch.device("cpu")), peak_bytes(their_steps, torch.device("cpu"))
        print(f"| {batch} | {a * 1e3:.3f} | {b * 1e3:.3f} | {b / a:.2f}x | {pa / 2**20:.2f} | "
              f"{pb / 2**20:.2f} | {pa / pb:.2f} |", flush=True)


# The bench CNN's two convolutions: (name, in, out, image side, whether the input gradient is needed)
CONVOLUTIONS = (("conv1", 1, 16, 8, False), ("conv2", 16, 32, 4, True))


def bench_layers(registry, quick: bool) -> None:
    print("\n## layers: each convolution of the CNN, forward + backward, one thread\n")
    repeats, steps = (5, 5) if quick else (21, 20)
    print("| layer | batch | algorithm | ours (us) | torch (us) | speed-up |\n|---|---|---|---|---|---|")
    for name, cin, cout, side, input_grad in CONVOLUTIONS:
        for batch in (32, 256):
            conv = registry.create("layer", "conv2d", in_channels=cin, out_channels=cout,
                                   kernel_size=3, padding=1, init=registry.create("initializer", "he"),
                                   generator=torch.Generator().manual_seed(0), layout="chwn")
            conv.needs_input_grad = input_grad
            x = torch.randn(batch, cin, side, side)
            x_ours = x.movedim(0, -1).contiguous()  # (c, h, w, batch): as inside the network
            weight = conv.weight.value.clone().requires_grad_()
            bias = conv.bias.value.clone().requires_grad_()
            x_theirs = x.clone().requires_grad_(input_grad)
            upstream = torch.randn(batch, cout, side, side)
            upstream_ours = upstream.movedim(0, -1).contiguous()

            def ours():
                with torch.set_grad_enabled(False):
                    for _ in range(steps):
                        conv.forward(x_ours)
                        conv.backward(upstream_ours)

            def theirs():
                with torch.enable_grad():
                    for _ in range(steps):
                        torch.nn.functional.conv2d(x_theirs, weight, bias, padding=1).backward(upstream)

            a, b = (t / steps for t in alternating_medians((ours, theirs), repeats))
            print(f"| {name} {cin}->{cout} on {side}x{side} | {batch} | {conv.algorithm.name} | "
                  f"{a * 1e6:.0f} | {b * 1e6:.0f} | {b / a:.2f}x |", flush=True)


def bench_ensemble(registry, quick: bool) -> None:
    runs = 6 if quick else 30
    # The accuracy section's recipe (30 epochs): what training 30 CNNs costs a user. Short
    # runs would time mostly what both sides do alike (reading data, the final evaluation).
    settings = dataclasses.replace(DIGITS, layers=PLAIN_CNN, epochs=1 if quick else DIGITS.epochs)
    print(f"\n## ensemble: {runs} runs of the plain CNN, {settings.epochs} epochs each\n")
    print(f"layers: {PLAIN_CNN}\n")
    prepare(resolve(settings, registry, EVERY_FIELD), registry)  # the one-time imports and reads, outside both timings
    start = time.perf_counter()
    train_ensemble(settings, range(runs), registry)
    together = time.perf_counter() - start
    start = time.perf_counter()
    for seed in range(runs):
        train(dataclasses.replace(settings, seed=seed), registry)
    apart = time.perf_counter() - start
    step_together, step_apart, step_wide = ensemble_steps(registry, settings, runs, 5 if quick else 21)
    print(f"| | as one ensemble | one at a time | speed-up |\n|---|---|---|---|\n"
          f"| {runs} whole runs | {together:.1f} s | {apart:.1f} s | {apart / together:.2f}x |\n"
          f"| one training step of all {runs} (median) | {step_together * 1e3:.1f} ms | "
          f"{step_apart * 1e3:.1f} ms | {step_apart / step_together:.2f}x |\n")
    # Batching saves per-op overhead, not arithmetic: one network's step on all the runs'
    # samples at once does the ensemble step's arithmetic with a single run's op count.
    print(f"One network's step on a batch of {runs} x {settings.batch_size}: {step_wide * 1e3:.1f} ms; "
          f"the {runs} single steps over it, {step_apart / step_wide:.2f}x, bound what batching can save.")


def ensemble_steps(registry, settings, runs: int, repeats: int) -> tuple[float, float]:
    """Medians of one step of `runs` networks: as one ensemble, as `runs` single steps, and
    one network's step on the `runs` batches at once."""
    run = prepare(resolve(settings, registry, EVERY_FIELD), registry)
    data, specs, in_shape = run.data, run.specs, run.in_features
    batch = settings.batch_size
    x, y = data.x_train[:batch], data.y_train[:batch]
    xs, ys = x.expand(runs, *x.shape).contiguous(), y.expand(runs, *y.shape).contiguous()
    loss = registry.create("loss", settings.loss)
    ensemble = build_flat_stack(registry, specs, in_shape, init=settings.init,
                                generator=torch.Generator().manual_seed(0), dtype=torch.float32,
                                device="cpu", runs=runs)
    single = run.build_network()

    def optimizer(model):
        return registry.create("optimizer", settings.optimizer, parameters=model.parameters(),
                               lr=settings.lr)

    together = our_steps(ensemble, loss, optimizer(ensemble), xs, ys, 1)
    apart = our_steps(single, loss, optimizer(single), x, y, runs)
    wide = our_steps(single, loss, optimizer(single), xs.flatten(0, 1), ys.flatten(0, 1), 1)
    return alternating_medians((together, apart, wide), repeats)


def our_steps(model, loss, optimizer, x, y, count: int):
    """A function running `count` training steps of our network on one batch, as the loop does
    (no_input_grad: nothing reads the data's gradient)."""
    def run():
        with torch.set_grad_enabled(False), no_input_grad(model):
            for _ in range(count):
                loss.forward(model.forward(x), y)
                optimizer.zero_grad()
                model.backward(loss.backward())
                optimizer.step()
    return run


def alternating_medians(functions, repeats: int) -> list[float]:
    """Each function's median wall time over `repeats`, the functions taking turns (so they
    see the same machine load), after one warm-up call each."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, spent in zip(functions, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


# glibc's mallopt parameters (malloc.h) and the values GLIBC_TUNABLES=glibc.malloc.
# trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432 would set at start-up.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to keep freed memory: blocks under 32 MiB from the heap (not mmap,
    which hands each freed block back to the kernel and faults the next one in page by page)
    and up to 1 GiB of freed heap kept. True when it took effect (Linux with glibc)."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(M_TRIM_THRESHOLD, 2**30))


# A fresh process trains, "on" with glibc's malloc tuned first (mallopt through ctypes).
ALLOCATOR_RUN = """
import resource, sys, time, dataclasses
sys.path.insert(0, "bench")
if sys.argv[1] == "on":
    from images import keep_freed_memory
    assert keep_freed_memory()
from core import TrainSettings, default_registry, train
settings = {settings}
registry = default_registry()
start = time.perf_counter()
train(settings, registry)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
"""


def bench_allocator(registry, quick: bool) -> None:
    import subprocess

    repeats = 1 if quick else 5
    print("\n## allocator: training with glibc's malloc tuned to keep freed memory and without\n")
    print("| training | tuned (s) | plain (s) | speed-up | page faults tuned | plain |\n|---|---|---|---|---|---|")
    cases = (("CNN on digits, 10 epochs, float32",
              dataclasses.replace(DIGITS, epochs=2 if quick else 10, dtype="float32")),
             ("the same at batch 256, 30 epochs",
              dataclasses.replace(DIGITS, epochs=2 if quick else 30, batch_size=256, dtype="float32")),
             ("default `nn-cli train` (the disk, MLP)", TrainSettings()))
    for name, settings in cases:
        code = ALLOCATOR_RUN.format(settings=repr(settings))
        results = {"on": [], "off": []}
        for _ in range(repeats):
            for mode in ("on", "off"):
                out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                     check=True, cwd=Path(__file__).resolve().parent.parent,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                seconds, faults = out.stdout.split()
                results[mode].append((float(seconds), int(faults)))
        on = statistics.median(t for t, _ in results["on"]), statistics.median(f for _, f in results["on"])
        off = statistics.median(t for t, _ in results["off"]), statistics.median(f for _, f in results["off"])
        print(f"| {name} | {on[0]:.2f} | {off[0]:.2f} | {off[0] / on[0]:.2f}x | {on[1]:,.0f} | "
              f"{off[1]:,.0f} |", flush=True)


def bench_denoise(registry, quick: bool) -> None:
    base = resolve(TrainSettings(data="denoise"), registry, ()).settings
    seeds = SEEDS[:1] if quick else SEEDS
    settings = dataclasses.replace(base, epochs=2 if quick else base.epochs)
    print(f"\n## denoise: the course's network on noisy digits, seeds {seeds[0]}-{seeds[-1]}\n")
    print(f"layers: {settings.layers}; Adam {settings.lr:g}, batch {settings.batch_size}, "
          f"{settings.epochs} epochs, {settings.schedule} schedule, MSE\n")
    ours, theirs, noisy = [], [], []
    for seed in seeds:
        run = dataclasses.replace(settings, seed=seed)
        ours.append(train(run, registry).metrics["psnr"])
        out, data = torch_train(run, registry, torch.nn.functional.mse_loss, schedule=run.schedule)
        theirs.append(regression_metrics(data.labels_test, out)["psnr"])
        noisy.append(regression_metrics(data.labels_test, data.x_test)["psnr"])
        print(f"seed {seed}: ours {ours[-1]:.2f} dB   torch.nn {theirs[-1]:.2f} dB   "
              f"(noisy input {noisy[-1]:.2f} dB)", flush=True)
    print("\n| side | mean PSNR (dB) | min | max |\n|---|---|---|---|")
    for name, values in (("ours", ours), ("torch.nn", theirs), ("the noisy input itself", noisy)):
        print(f"| {name} | {statistics.mean(values):.2f} | {min(values):.2f} | {max(values):.2f} |")


SECTIONS = {"accuracy": bench_accuracy, "step": bench_step, "layers": bench_layers, "ensemble": bench_ensemble,
            "allocator": bench_allocator, "denoise": bench_denoise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--quick", action="store_true", help="a sanity run")
    parser.add_argument("--tuned-malloc", action="store_true",
                        help="keep freed memory in the process (see keep_freed_memory), both sides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tuned_malloc:
        keep_freed_memory()
    registry = default_registry()
    print(f"torch {torch.__version__}, one thread, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{'tuned' if args.tuned_malloc else 'plain'} malloc, load average {os.getloadavg()[0]:.2f}")
    for name in args.only.split(","):
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name](registry, args.quick)


if __name__ == "__main__":
    main()
