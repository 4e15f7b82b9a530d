"""`nn-cli`: list the registered components and train a network assembled from their names.

The CLI is thin: it parses options into `TrainSettings`, and everything else happens in
`core`, which a Python user calls the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from core.errors import NNError, SettingsError
from core.settings import TrainSettings, parse_widths

DEFAULTS = TrainSettings()
# `nn-cli train` options that make up TrainSettings (refused beside --resume).
SETTING_OPTIONS = ("act", "loss", "init", "optimizer", "hidden", "epochs", "lr", "batch_size",
                   "seed", "dtype")


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
    ctx: typer.Context,
    act: Annotated[str, typer.Option(help="Activation between layers (`nn-cli list activation`).")] = DEFAULTS.act,
    loss: Annotated[str, typer.Option(help="Loss (`nn-cli list loss`).")] = DEFAULTS.loss,
    init: Annotated[str, typer.Option(help="Weight initializer (`nn-cli list initializer`).")] = DEFAULTS.init,
    optimizer: Annotated[str, typer.Option(help="Optimizer (`nn-cli list optimizer`).")] = DEFAULTS.optimizer,
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated.")] = ",".join(map(str, DEFAULTS.hidden)),
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = DEFAULTS.epochs,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = DEFAULTS.lr,
    batch_size: Annotated[int, typer.Option(help="Samples per gradient step.")] = DEFAULTS.batch_size,
    seed: Annotated[int, typer.Option(help="Seed of data, weights and shuffling.")] = DEFAULTS.seed,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = DEFAULTS.dtype,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    save: Annotated[Optional[str], typer.Option(help="Write the trained model to this file (safetensors).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="Checkpoint file (default: beside --save).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Write a checkpoint every K epochs.")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue the run saved in this checkpoint.")] = None,
) -> None:
    """Train a network on the disk problem and report its train and test error."""
    settings = TrainSettings(
        act=act, loss=loss, init=init, optimizer=optimizer, hidden=parse_widths(hidden),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype,
    )
    if resume is not None:
        _refuse_settings_beside_resume(ctx)
    if save is not None:
        from core.atomic import check_writable

        check_writable(save)  # fail now, not after training
    from core.experiment import train as run  # imports torch: only once there is work
    from core.checkpoint import checkpoint_plan, read_checkpoint
    from core.progress import epoch_reporter

    state = read_checkpoint(resume) if resume is not None else None
    settings = state.settings if state is not None else settings  # a resumed run's own
    plan = checkpoint_plan(checkpoint=checkpoint, every=checkpoint_every, save=save, resume=state)
    # With --json, stdout holds the JSON alone and the progress goes to stderr.
    with epoch_reporter(settings.epochs, to_stderr=as_json) as on_epoch:
        result = run(settings, on_epoch=on_epoch, checkpoint=plan, resume=state)
    if save is not None:
        from core.model_file import save_model

        save_model(save, result)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(f"train error {result.train_error:.2%}   test error {result.test_error:.2%}")


def _refuse_settings_beside_resume(ctx: typer.Context) -> None:
    """The checkpoint fixes the run: a setting given beside --resume would be ignored."""
    given = [name for name in SETTING_OPTIONS
             if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"]
    if given:
        raise SettingsError(
            f"--resume continues the checkpoint's run with its own settings; drop "
            f"{', '.join('--' + n.replace('_', '-') for n in given)}"
        )


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="A model file written by `nn-cli train --save`.")],
    input: Annotated[str, typer.Option("--input", help="CSV or JSON rows of features.")],
    output: Annotated[Optional[str], typer.Option(help="Write here (atomically) instead of stdout.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv or json (default: by --output's extension, else csv).")] = None,
) -> None:
    """Predict the score and class of every row of a file with a saved model."""
    from core.inference import predict_file

    text = predict_file(model, input, output=output, fmt=fmt)
    if output is None:
        typer.echo(text, nl=False)


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="A model file written by `nn-cli train --save`.")],
    input: Annotated[Optional[str], typer.Option("--input", help="CSV or JSON rows with a label column; default: fresh points.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fresh test set.")] = 0,
    n: Annotated[int, typer.Option(help="Points in the fresh test set.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Report a saved model's error on fresh points of the disk task or on a labelled file."""
    from core.inference import evaluate_model

    result = evaluate_model(model, input_path=input, seed=seed, n=n)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(f"error {result.error:.2%} on {result.n} points ({result.source})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
