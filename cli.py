"""`nn-cli`: list the registered components and train a network assembled from their names.

The CLI is thin: it parses options into `TrainSettings`, and everything else happens in
`core`, which a Python user calls the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from core.errors import NNError
from core.settings import TrainSettings, parse_widths

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
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated.")] = ",".join(map(str, DEFAULTS.hidden)),
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = DEFAULTS.epochs,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = DEFAULTS.lr,
    batch_size: Annotated[int, typer.Option(help="Samples per gradient step.")] = DEFAULTS.batch_size,
    seed: Annotated[int, typer.Option(help="Seed of data, weights and shuffling.")] = DEFAULTS.seed,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = DEFAULTS.dtype,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = DEFAULTS.device,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Train a network on the disk problem and report its train and test error."""
    settings = TrainSettings(
        act=act, loss=loss, init=init, optimizer=optimizer, hidden=parse_widths(hidden),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype, device=device,
    )
    from core.experiment import train as run  # imports torch: only once there is work
    from core.progress import epoch_reporter

    # With --json, stdout holds the JSON alone and the progress goes to stderr.
    with epoch_reporter(settings.epochs, to_stderr=as_json) as on_epoch:
        result = run(settings, on_epoch=on_epoch)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(f"train error {result.train_error:.2%}   test error {result.test_error:.2%}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
