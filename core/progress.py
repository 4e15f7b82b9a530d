"""Training progress: a live bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def epoch_reporter(epochs: int, *, to_stderr: bool) -> Iterator[Callable[[int, float], None]]:
    stream = sys.stderr if to_stderr else sys.stdout
    if not stream.isatty():

        def plain(epoch: int, loss: float) -> None:
            print(f"epoch {epoch}/{epochs}  loss {loss:.6f}", file=stream, flush=True)

        yield plain
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("training"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=False) as progress:
        task = progress.add_task("train", total=epochs, loss="-")

        def live(epoch: int, loss: float) -> None:
            progress.update(task, completed=epoch, loss=f"{loss:.6f}")

        yield live
