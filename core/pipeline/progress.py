"""Training progress: a live bar on a terminal, one plain line per epoch otherwise.

Progress goes to stderr by default, so that stdout holds the results alone:
`nn-cli compare ... > table.txt` writes the table and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def epoch_reporter(
    epochs: int, *, to_stderr: bool = True, quiet: bool = False
) -> Iterator[Callable[[int, float], None] | None]:
    """A callback per epoch: a live bar on a terminal, else a line; None when `quiet`."""
    if quiet:
        yield None
        return
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


class RunProgress:
    """Callbacks for many runs: `on_epoch(run, epoch, loss)` and `on_run(run, result)`.

    `label` names the configuration being run and `offset` counts the runs of the
    configurations before it, so one display covers a whole comparison. Under a sweep of
    several processes rank 0 reports the runs it trains itself, each by its number among
    all the runs; its bar counts them.
    """

    def __init__(self, total_runs: int, epochs: int, stream, progress=None, quiet: bool = False):
        self.total_runs, self.epochs, self.stream, self.progress = total_runs, epochs, stream, progress
        self.quiet = quiet  # report nothing (a rank other than 0 of a distributed run)
        self.label, self.offset = "", 0
        self.finished = 0  # runs this process finished, over every configuration so far
        self.configurations = 1  # a comparison's count: its runs bar says which one runs
        if progress is not None:
            self.runs_task = progress.add_task("runs", total=total_runs, what="runs", loss="-")
            self.epochs_task = progress.add_task("epochs", total=epochs, what="epochs", loss="-")

    def on_epoch(self, run: int | None, epoch: int, loss: float) -> None:
        if self.quiet or self.progress is None:
            return
        if run is None:  # every run at once: the epochs bar is the whole story
            self.progress.update(self.runs_task, visible=self.configurations > 1)
            self.progress.update(self.epochs_task, what="epochs, runs together (mean loss)")
        self.progress.update(self.epochs_task, completed=epoch, loss=f"{loss:.6f}")

    def on_run(self, run: int, result) -> None:
        done = self.offset + run + 1  # the run's number among all (a sweep's ranks take turns)
        self.finished += 1  # runs this process finished
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.update(self.runs_task, completed=self.finished,
                                 what=f"runs {self.label}".rstrip())
            return
        label = f"{self.label}  " if self.label else ""
        tested = "none held out" if result.test_error is None else f"{result.test_error:.2%}"
        print(
            f"{label}run {done}/{self.total_runs}  seed {result.settings.seed}  "
            f"train error {result.train_error:.2%}  test error {tested}  "
            f"final loss {result.losses[-1]:.6f}",
            file=self.stream, flush=True,
        )


@contextmanager
def runs_reporter(
    total_runs: int, epochs: int, *, to_stderr: bool = True, quiet: bool = False
) -> Iterator[RunProgress]:
    """Two live bars (runs, epochs of the current run) on a terminal; else a line per run;
    nothing at all when `quiet`."""
    if quiet:
        yield RunProgress(total_runs, epochs, None, quiet=True)
        return
    stream = sys.stderr if to_stderr else sys.stdout
    if not stream.isatty():
        yield RunProgress(total_runs, epochs, stream)
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=False) as progress:
        yield RunProgress(total_runs, epochs, stream, progress)
