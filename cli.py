"""`nn-cli`: list the registered components, train networks assembled from their names
(once or `--runs` times), and compare configurations.

The CLI is thin: it parses options into `TrainSettings`, and everything else happens in
`core`, which a Python user calls the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from core.errors import NNError
from core.settings import TrainSettings, parse_optimizer_args, parse_widths

DEFAULTS = TrainSettings()


class OneLineErrors(typer.core.TyperGroup):
    """Turns every usage error and NNError into one line on stderr and exit status 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as e:  # typer's usage errors: bad option, bad type
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `nn-cli`: show the help
                typer.echo(e.ctx.get_help())
                code = 0
            else:
                code = _fail(e.format_message())
        except NNError as e:
            code = _fail(str(e))
        except typer.Abort:
            code = _fail("aborted")
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str) -> int:
    typer.echo(f"nn-cli: error: {message}", err=True)
    return 2


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A from-scratch neural-network framework: every backward written by hand.",
)


@app.command("list")
def list_components(
    kind: Annotated[Optional[str], typer.Argument(help="Show only this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """List every registered component by kind, with its summary and plugin."""
    from core.registry import default_registry

    registry = default_registry()
    entries = registry.entries(kind)
    if as_json:
        rows = [{"kind": e.kind, "name": e.name, "summary": e.summary, "plugin": e.plugin}
                for e in entries]
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(e.name) for e in entries), default=0)
    current = None
    for e in entries:
        if e.kind != current:
            typer.echo(("" if current is None else "\n") + f"{e.kind}:")
            current = e.kind
        typer.echo(f"  {e.name:<{width}}  {e.summary}  [{e.plugin}]")


@app.command()
def train(
    act: Annotated[str, typer.Option(help="Activation between layers (`nn-cli list activation`).")] = DEFAULTS.act,
    loss: Annotated[str, typer.Option(help="Loss (`nn-cli list loss`).")] = DEFAULTS.loss,
    init: Annotated[str, typer.Option(help="Weight initializer (`nn-cli list initializer`).")] = DEFAULTS.init,
    optimizer: Annotated[str, typer.Option(help="Optimizer (`nn-cli list optimizer`).")] = DEFAULTS.optimizer,
    opt: Annotated[str, typer.Option(help="Optimizer options KEY=VALUE,..., e.g. momentum=0.9,nesterov=true.")] = "",
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated.")] = ",".join(map(str, DEFAULTS.hidden)),
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = DEFAULTS.epochs,
    lr: Annotated[float, typer.Option(help="Learning rate (where the schedule starts).")] = DEFAULTS.lr,
    schedule: Annotated[str, typer.Option(help="Learning rate schedule: cosine or constant.")] = DEFAULTS.schedule,
    batch_size: Annotated[int, typer.Option(help="Samples per gradient step.")] = DEFAULTS.batch_size,
    preprocess: Annotated[str, typer.Option(help="Input step fitted on the training inputs: standardize or none.")] = DEFAULTS.preprocess,
    seed: Annotated[int, typer.Option(help="Seed of data, weights and shuffling (first run's).")] = DEFAULTS.seed,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = DEFAULTS.dtype,
    runs: Annotated[int, typer.Option(help="Train this many models, seeds SEED, SEED+1, ...")] = 1,
    plot: Annotated[Optional[str], typer.Option(help="Write loss.png and test_points.png into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Train a network on the disk problem and report its train and test error."""
    settings = TrainSettings(
        act=act, loss=loss, init=init, optimizer=optimizer, hidden=parse_widths(hidden),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype,
        preprocess=preprocess, schedule=schedule, optimizer_args=parse_optimizer_args(opt),
    )
    _check_outputs(runs, plot, None)
    from core.compare import label
    from core.experiment import check  # imports torch: only once there is work
    from core.multirun import run_many
    from core.progress import epoch_reporter, runs_reporter
    from core.registry import default_registry

    _one_thread()
    registry = default_registry()
    check(settings, registry)
    # With --json, stdout holds the JSON alone and the progress goes to stderr.
    if runs == 1:
        with epoch_reporter(settings.epochs, to_stderr=as_json) as on_epoch:
            result = run_many(settings, 1, registry, on_epoch=lambda _, e, v: on_epoch(e, v))
    else:
        with runs_reporter(runs, settings.epochs, to_stderr=as_json) as progress:
            result = run_many(settings, runs, registry, progress.on_epoch, progress.on_run)
    if plot is not None:
        _write_figures(plot, [(label(settings, ["act", "loss"]), result)], registry, as_json)
    if as_json:
        typer.echo(json.dumps(result.results[0].to_dict() if runs == 1 else result.to_dict()))
    elif runs == 1:
        only = result.results[0]
        typer.echo(f"train error {only.train_error:.2%}   test error {only.test_error:.2%}")
    else:
        s = result.summary()
        typer.echo(
            f"{runs} runs (seeds {seed}-{seed + runs - 1}), mean ± std:   "
            f"train error {s['train_error_mean']:.2%} ± {s['train_error_std']:.2%}   "
            f"test error {s['test_error_mean']:.2%} ± {s['test_error_std']:.2%}"
        )


def _one_thread() -> None:
    """Run torch's kernels on one thread.

    The tensors here are tiny (batch 10 x 25), so extra intra-op threads bring nothing,
    and on a busy machine their spinning made training up to 50 times slower (5 epochs:
    1.6 s on one thread, 76 s on two, on the shared 2-core development machine).
    """
    import torch

    torch.set_num_threads(1)


def _check_outputs(runs: int, plot: str | None, csv_path: str | None) -> None:
    from core.errors import SettingsError
    from core.paths import check_output_dir, check_output_file

    if runs < 1:
        raise SettingsError(f"runs must be an integer >= 1, got {runs!r}")
    if plot is not None:
        check_output_dir(plot, "--plot")
    if csv_path is not None:
        check_output_file(csv_path, "--csv")


def _write_figures(directory: str, curves, registry, to_stderr: bool) -> None:
    from core.figures import write_figures

    for path in write_figures(directory, curves, registry):
        typer.echo(f"wrote {path}", err=to_stderr)


def _many(kind, help_text: str):
    """An option that may be given several times; each value is one variant to compare."""
    return Annotated[Optional[list[kind]], typer.Option(help=help_text + " Repeat to compare.")]


@app.command()
def compare(
    act: _many(str, "Activation.") = None,
    loss: _many(str, "Loss.") = None,
    init: _many(str, "Weight initializer.") = None,
    optimizer: _many(str, "Optimizer.") = None,
    opt: _many(str, "Optimizer options KEY=VALUE,... ('' for none).") = None,
    hidden: _many(str, "Hidden layer widths, comma-separated.") = None,
    epochs: _many(int, "Passes over the training set.") = None,
    lr: _many(float, "Learning rate.") = None,
    schedule: _many(str, "Learning rate schedule: cosine or constant.") = None,
    batch_size: _many(int, "Samples per gradient step.") = None,
    preprocess: _many(str, "Input step: standardize or none.") = None,
    dtype: _many(str, "float32 or float64.") = None,
    seed: Annotated[int, typer.Option(help="First seed of every configuration's runs.")] = DEFAULTS.seed,
    runs: Annotated[int, typer.Option(help="Models trained per configuration.")] = 1,
    plot: Annotated[Optional[str], typer.Option(help="Write loss.png and test_points.png into this folder.")] = None,
    csv_path: Annotated[Optional[str], typer.Option("--csv", help="Also write the table as CSV to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Train every combination of the given values `--runs` times; print mean ± std."""
    given = {
        "act": act, "loss": loss, "init": init, "optimizer": optimizer,
        "optimizer_args": opt and [parse_optimizer_args(o) for o in opt],
        "hidden": hidden and [parse_widths(h) for h in hidden], "epochs": epochs, "lr": lr,
        "schedule": schedule, "batch_size": batch_size, "preprocess": preprocess, "dtype": dtype,
    }
    variations = {key: list(dict.fromkeys(values)) for key, values in given.items() if values}
    _check_outputs(runs, plot, csv_path)
    from core.compare import configurations

    base = TrainSettings(seed=seed)
    configs = configurations(base, variations)  # checks every value before any work
    from core.compare import compare as run_compare
    from core.progress import runs_reporter
    from core.registry import default_registry

    _one_thread()
    registry = default_registry()
    longest = max(c.epochs for c in configs)
    with runs_reporter(runs * len(configs), longest, to_stderr=as_json) as progress:

        def next_configuration(index: int, name: str) -> None:
            progress.label, progress.offset = name, index * runs

        comparison = run_compare(base, variations, runs, registry, progress.on_epoch,
                                 progress.on_run, next_configuration)
    if plot is not None:
        _write_figures(plot, list(zip(comparison.labels, comparison.results)), registry, as_json)
    if csv_path is not None:
        comparison.write_csv(csv_path)
    if as_json:
        typer.echo(json.dumps(comparison.to_dict()))
    else:
        typer.echo(comparison.table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
