"""`nn-cli`: list the registered components, train networks assembled from their names
(once or `--runs` times), and compare configurations.

The CLI is thin: it parses options into `TrainSettings`, and everything else happens in
`core`, which a Python user calls the same way.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from core.errors import Interrupted, NNError, SettingsError
from core.training.settings import (
    TrainSettings, in_option_words, parse_optimizer_args, parse_widths,
)

DEFAULTS = TrainSettings()
# `nn-cli train` options that make up TrainSettings (refused beside --resume).
SETTING_OPTIONS = ("act", "loss", "init", "optimizer", "hidden", "epochs", "lr", "batch_size",
                   "seed", "dtype", "device", "layers", "opt", "schedule", "preprocess", "data",
                   "target", "test_fraction", "val_fraction", "patience", "l1", "l2")
# CLI option -> the TrainSettings field it sets, where the names differ
FIELD_OF = {"opt": "optimizer_args"}
DataOpt = Annotated[str, typer.Option(
    help="What to learn: a dataset with options, e.g. spiral:arms=3,noise=0.2 "
         "(`nn-cli list dataset`), or a .csv/.tsv/.json/.npz file.")]
TargetOpt = Annotated[Optional[str], typer.Option(
    help="A file's target column (name or number; default: 'label', else the last).")]
TestFractionOpt = Annotated[float, typer.Option(
    help="Share held out for testing when the data have no test split (stratified; "
         "0: train on every row, test none).")]
ValFractionOpt = Annotated[float, typer.Option(
    help="Share of the training rows held out to pick the best epoch (0: none).")]
PLOT_HELP = ("Write the figures into this folder: loss.png, and as the data call for "
             "test_points.png, misclassified.png, confusion.png or predicted.png.")
PatienceOpt = Annotated[Optional[int], typer.Option(
    help="Stop after this many epochs without a lower validation loss (needs --val-fraction).")]
L1Opt = Annotated[float, typer.Option(help="Penalty l1 * sum |w| on the weight matrices (0: none).")]
L2Opt = Annotated[float, typer.Option(help="Penalty l2 * sum w^2 on the weight matrices (0: none).")]


class OneLineErrors(typer.core.TyperGroup):
    """Turns every usage error and NNError into one line on stderr and exit status 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        with warnings.catch_warnings():
            warnings.showwarning = _note
            code = self._one_line_errors(*args, **kwargs)
        if standalone_mode:
            sys.exit(code)
        return code

    def get_help_option(self, ctx):
        return _flag(super().get_help_option(ctx))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None and not hasattr(command, "_help_flag"):  # each command's --help
            get_help_option = command.get_help_option
            command._help_flag = True
            command.get_help_option = lambda ctx: _flag(get_help_option(ctx))
        return command

    def _one_line_errors(self, *args, **kwargs) -> int:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as e:  # typer's usage errors: bad option, bad type
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `nn-cli`: show the help
                typer.echo(e.ctx.get_help())
                code = 0
            else:
                code = _fail(e.format_message())
        except NNError as e:  # a setting by the option that sets it: --test-fraction
            from core.data.dataset import DataError  # whose messages quote files' own words

            is_setting = isinstance(e, SettingsError) and not isinstance(e, DataError)
            code = _fail(in_option_words(str(e)) if is_setting else str(e))
        except Stopped as e:
            typer.echo(f"nn-cli: {e}", err=True)
            code = INTERRUPTED
        except typer.Abort:  # Ctrl-C anywhere else, as click reports it
            typer.echo("nn-cli: interrupted", err=True)
            code = INTERRUPTED
        except (MemoryError, RuntimeError) as e:  # torch's CPU allocator raises RuntimeError
            if not _out_of_memory(e):
                raise
            code = _fail(
                f"out of memory ({_first_line(e)}): lower the network's size (--hidden, "
                f"--layers), --batch-size, or evaluate's --n, or split the input file"
            )
        return code if isinstance(code, int) else 0


def _flag(option):
    """--help takes no value: no `<bool>` beside it in the help (typer's metavar for a flag)."""
    if option is not None:
        option.metavar = ""
    return option


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


class Stopped(Exception):
    """Ctrl-C stopped a command; the message says how far it got and how to go on."""


def _fail(message: str) -> int:
    rank = 0 if _WORLD is None else _WORLD.rank  # under torchrun: say which process failed
    where = "" if rank == 0 else f" (rank {rank})"
    typer.echo(f"nn-cli: error{where}: {message}", err=True)
    return 2


def _out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _note(message, category, *_args, **_kwargs) -> None:
    """A warning (a file loaded unverified, say) as one line on stderr."""
    typer.echo(f"nn-cli: note: {message}", err=True)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Markdown reflows a docstring's paragraphs to the terminal's width; rich mode kept the
    # source's line breaks, so help text broke mid-sentence.
    rich_markup_mode="markdown",
    help="A from-scratch neural-network framework: every backward written by hand.",
)


# Plugin options, accepted before the command (`nn-cli --plugin x.py train`) and by each
# command that uses the registry (`nn-cli train --plugin x.py`); both places add up.
PluginOpt = Annotated[Optional[list[str]], typer.Option(
    "--plugin", "-p", metavar="MODULE_OR_PATH",
    help="Load this plugin module or .py file too (repeatable).")]
RegistryOpt = Annotated[Optional[Path], typer.Option(
    "--registry", metavar="PATH",
    help="A registry.toml listing plugin modules (default: ./registry.toml when present).")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict-plugins", metavar="", help="A plugin that fails to load is fatal (also NN_STRICT_PLUGINS=1).")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    metavar="K",
    help="Start K local processes under torchrun (rendezvous on 127.0.0.1) and split the "
         "work between them: the runs, or with one run each batch (data parallel).")]
OneAtATimeOpt = Annotated[bool, typer.Option(
    "--one-at-a-time", metavar="",  # a flag: no value (typer would show <bool>)
    help="Train the runs one after another, each bit for bit its seed's single run, instead "
         "of together as one batched ensemble (faster; equal to rounding).")]


@app.callback()
def plugin_options(
    ctx: typer.Context,
    plugin: PluginOpt = None,
    registry: RegistryOpt = None,
    strict_plugins: StrictOpt = False,
) -> None:
    """A from-scratch neural-network framework: every backward written by hand.

    Plugins: built-ins, then installed packages (entry points `nn_scratch`; off with
    NN_DISABLE_PLUGIN_AUTOLOAD=1), then ./registry.toml or --registry, then --plugin.
    """
    ctx.obj = {"plugins": list(plugin or []), "registry": registry, "strict": strict_plugins}


@dataclass
class Plugins:
    """A command's plugin options: those given before it (`nn-cli --plugin x.py train`) and
    to it (`nn-cli train --plugin x.py`), added up."""

    modules: list[str]
    registry_file: Path | None
    strict: bool

    def registry(self):
        """The registry for this command: every plugin found, failures reported once each."""
        from core.plugin.discovery import describe_failure, load_registry

        def warn(record: Any) -> None:
            typer.echo(f"nn-cli: warning: {describe_failure(record)}; skipped", err=True)

        return load_registry(self.modules, self.registry_file, strict=self.strict, on_error=warn)

    def options(self) -> list[tuple[str, Any]]:
        """As command-line options again (for the command that resumes a run)."""
        return [("--plugin", m) for m in self.modules] + [("--registry", self.registry_file)]


def with_plugins(command):
    """Give `command` the plugin options, declared here once for every command that uses
    the registry, and hand it their sum as `plugins` (a `Plugins`)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "plugins"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                               annotation=annotation)
             for name, annotation, default in (("plugin", PluginOpt, None),
                                               ("registry_file", RegistryOpt, None),
                                               ("strict_plugins", StrictOpt, False))]

    @functools.wraps(command)
    def with_them(*args, plugin=None, registry_file=None, strict_plugins=False, **kwargs):
        top = kwargs["ctx"].find_root().obj or {}
        plugins = Plugins([*top.get("plugins", []), *(plugin or [])],
                          registry_file if registry_file is not None else top.get("registry"),
                          strict_plugins or top.get("strict", False))
        return command(*args, plugins=plugins, **kwargs)

    with_them.__signature__ = signature.replace(parameters=own + added)
    return with_them


@app.command("list")
@with_plugins
def list_components(
    ctx: typer.Context,
    kind: Annotated[Optional[str], typer.Argument(help="Show only this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON instead of text.")] = False,
    plugins: Plugins = None,
) -> None:
    """List every registered component by kind, with its summary and plugin."""
    registry = plugins.registry()
    entries = registry.entries(kind)
    if as_json:
        rows = []
        for e in entries:
            record = registry.records.get(e.plugin)
            rows.append({"kind": e.kind, "name": e.name, "summary": e.summary, "plugin": e.plugin,
                         "source": record.source if record else None,
                         "origin": record.origin if record else None})
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(e.name) for e in entries), default=0)
    current = None
    for e in entries:
        if e.kind != current:
            typer.echo(("" if current is None else "\n") + f"{e.kind}:")
            current = e.kind
        record = registry.records.get(e.plugin)
        builtin = record is None or record.source == "builtin"
        where = "" if builtin else f", {record.source} {record.origin}"
        typer.echo(f"  {e.name:<{width}}  {e.summary}  [{e.plugin}{where}]")


@app.command("plugins")
@with_plugins
def list_plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON instead of text.")] = False,
    plugins: Plugins = None,
) -> None:
    """Every plugin: where it came from, what it registered, or why it failed."""
    records = list(plugins.registry().records.values())
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    for r in records:
        version = f" {r.version}" if r.version and r.distribution else ""
        where = r.distribution + version if r.distribution else (r.path or r.origin)
        typer.echo(f"{r.name}  [{r.source}]  {where}")
        if r.error:
            typer.echo(f"  FAILED: {r.error}")
        else:
            typer.echo(f"  registered: {', '.join(r.components) or 'nothing'}")


@app.command("info")
@with_plugins
def info(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered component's name.")],
    kind: Annotated[Optional[str], typer.Option(
        help="Its kind, when several kinds use the name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON instead of text.")] = False,
    plugins: Plugins = None,
) -> None:
    """A component's signature, parameters and defaults, documentation and plugin; or, given a
    saved model file, its layers' output shapes and parameter counts."""
    from core.network.info import component_info, info_text

    if Path(name).is_file():  # a model or checkpoint file: its layer table
        _model_summary(name, plugins.registry(), as_json)
        return
    data = component_info(plugins.registry(), name, kind)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(info_text(data))


def _print_summary(in_shape, rows: list[dict], as_json: bool) -> None:
    from core.network.summary import format_table

    if as_json:
        typer.echo(json.dumps({"input_shape": list(in_shape) if isinstance(in_shape, tuple)
                               else [in_shape], "layers": rows}, indent=2))
    else:
        typer.echo(format_table(rows, in_shape))


def _model_summary(path: str, registry, as_json: bool) -> None:
    from core.files.inference import model_layers

    loaded, shape, rows = model_layers(path, registry)
    if not as_json:
        typer.echo(f"{path}: a {loaded.header['kind']} trained on {loaded.dataset['name']}")
    _print_summary(shape, rows, as_json)


@app.command()
@with_plugins
def train(
    ctx: typer.Context,
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
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = DEFAULTS.device,
    runs: Annotated[int, typer.Option(help="Train this many models, seeds SEED, SEED+1, ...")] = 1,
    one_at_a_time: OneAtATimeOpt = False,
    plot: Annotated[Optional[str], typer.Option(help=PLOT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
    layers: Annotated[Optional[str], typer.Option(
        help="The whole network by name, e.g. 'linear:out=25,tanh,linear:out=1' "
             "(replaces --act/--hidden; `nn-cli info NAME` lists a component's arguments).")] = None,
    plugins: Plugins = None,
    save: Annotated[Optional[str], typer.Option(help="Write the trained model to this file (safetensors).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="Checkpoint file (default: beside --save).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Write a checkpoint every K epochs.")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue the run saved in this checkpoint.")] = None,
    data: DataOpt = DEFAULTS.data,
    target: TargetOpt = None,
    test_fraction: TestFractionOpt = DEFAULTS.test_fraction,
    val_fraction: ValFractionOpt = DEFAULTS.val_fraction,
    patience: PatienceOpt = None,
    l1: L1Opt = DEFAULTS.l1,
    l2: L2Opt = DEFAULTS.l2,
    summary: Annotated[bool, typer.Option(
        "--summary", metavar="", help="Print each layer's output shape and parameter count, and train nothing.")] = False,
    workers: WorkersOpt = None,
) -> None:
    """Train a network (on the report's disk unless --data says otherwise) and report its
    train and test error.

    Options not typed take the dataset's defaults (`nn-cli info DATASET`), and the loss
    the task's: bce for two classes, cross_entropy for more, mse for regression.

    Under torchrun (or with --workers K) the processes share the work: --runs N splits the
    seeds between them; a single run trains data parallel, each process on its slice of
    every batch. Rank 0 alone prints and writes files.
    """
    _refuse_beside_layers(layers, _given(ctx, ("act", "hidden")))
    settings = TrainSettings(
        act=act, loss=loss, init=init, optimizer=optimizer, hidden=parse_widths(hidden),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype, device=device,
        layers=layers, preprocess=preprocess, schedule=schedule,
        optimizer_args=parse_optimizer_args(opt), data=data, target=target,
        test_fraction=test_fraction, val_fraction=val_fraction, patience=patience, l1=l1, l2=l2,
    )
    with _workers(ctx, workers):  # --workers K: the other K - 1 start now
        _check_outputs(runs, plot, None)
        if runs > 1 and any(v is not None for v in (save, checkpoint, checkpoint_every, resume)):
            raise SettingsError(
                f"--runs {runs} trains several models; --save, --checkpoint, --checkpoint-every "
                f"and --resume work on one run: drop them or --runs"
            )
        registry = plugins.registry()
        if resume is not None:
            _refuse_settings_beside_resume(ctx)
        _one_thread()
        from core.files.atomic import write_locks

        here = _world(settings.device, join=False)  # this process's rank; no group joined yet
        # --save fails now, not after training; held for the whole run, a second run with
        # the same --save is refused at once (see core/files/atomic.py). Under torchrun
        # rank 0 alone writes files, so it alone holds the lock.
        with write_locks(save if here is None or here.main else None):
            _train(ctx, settings, registry, here, runs=runs, one_at_a_time=one_at_a_time,
                   plot=plot, as_json=as_json, save=save, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, resume=resume, plugins=plugins,
                   summary=summary)


def _train(ctx, settings, registry, here, *, runs, one_at_a_time, plot, as_json, save,
           checkpoint, checkpoint_every, resume, plugins, summary) -> None:
    """Resolve, prepare and train one run or `runs`, and report: the pipeline's steps in
    order, each a library call."""
    from core.files.checkpoint import checkpoint_plan, read_checkpoint
    from core.pipeline.multirun import MultiRunResult, run_many
    from core.pipeline.prepare import prepare
    from core.pipeline.progress import epoch_reporter, runs_reporter
    from core.pipeline.resolve import EVERY_FIELD, resolve
    from core.pipeline.train import train_run

    restarted = resume is None and _restarted_from(checkpoint)
    resume = checkpoint if restarted else resume
    state = read_checkpoint(resume, registry) if resume is not None else None
    if restarted and (here is None or here.main):
        typer.echo(f"nn-cli: torchrun restarted the workers: going on from {checkpoint} "
                   f"(epoch {state.epoch})", err=True)
    # A resumed run is the checkpoint's, whole; else the options typed win over the defaults.
    resolved = (resolve(state.settings, registry, EVERY_FIELD) if state is not None
                else resolve(settings, registry, _typed(ctx)))
    settings = resolved.settings
    run = prepare(resolved, registry, runs=1 if one_at_a_time else runs)  # checks it all
    if summary:
        _print_summary(*run.summary(), as_json)
        return
    plan = checkpoint_plan(checkpoint=checkpoint, every=checkpoint_every, save=save, resume=state)
    world = _world(settings.device)
    quiet = world is not None and not world.main  # only rank 0 reports
    if not quiet:
        typer.echo(_what_it_trains(run, runs), err=True)
        if resolved.chosen:  # the defaults for a small table, each with why
            typer.echo(_defaults_text(resolved.chosen), err=True)
    # Progress and status lines go to stderr: stdout holds the results alone (`> file`).
    progress = None
    try:
        if runs == 1:
            with epoch_reporter(settings.epochs, to_stderr=True, quiet=quiet) as on_epoch:
                result = train_run(run, on_epoch, checkpoint=plan, resume=state, world=world)
            many = MultiRunResult(settings, [result])
        else:
            del run  # each seed prepares its own
            with runs_reporter(runs, settings.epochs, to_stderr=True,
                               quiet=quiet) as progress:
                many = run_many(resolved, runs, registry, progress.on_epoch, progress.on_run,
                                together=not one_at_a_time, world=world)
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) and runs == 1:
            raise Stopped(_where_it_stopped(e, save, plugins)) from None
        finished = f"; {progress.finished} of {runs} runs finished" if progress else ""
        raise Stopped(f"interrupted before training ended{finished}; nothing was saved") from None
    if not quiet:
        _report_training(many, registry, as_json=as_json, save=save, plot=plot,
                         chosen=resolved.chosen)


def _report_training(many, registry, *, as_json: bool, save: str | None, plot: str | None,
                     chosen=()) -> None:
    """What `nn-cli train` shows and writes of its runs: the model file, the figures, and
    the errors as JSON or text (with the small-table defaults `chosen`, in the JSON)."""
    settings, first, runs = many.settings, many.results[0], len(many.results)
    if save is not None:
        from core.files.model_file import save_model

        save_model(save, first, registry=registry)
        typer.echo(f"wrote {save}", err=True)
    if plot is not None:
        from core.pipeline.compare import run_label

        _write_figures(plot, [(run_label(settings), many)], registry)
    if as_json:
        out = first.to_dict() if runs == 1 else many.to_dict()
        if chosen and runs > 1:  # one run's result lists them itself (TrainResult.defaults)
            out["defaults"] = [d.to_dict() for d in chosen]
        typer.echo(json.dumps(out))
        return
    typer.echo(many.text())


def _typed(ctx: typer.Context) -> set[str]:
    """The TrainSettings fields whose options were typed (not left at their defaults)."""
    return {FIELD_OF.get(name, name) for name in SETTING_OPTIONS
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}


def _world(device: str, join: bool = True):
    """This process's place under torchrun (core.training.distributed.World), or None when
    alone; `join=False` reads its rank without joining the process group (the sweep joins
    it to gather). The rank errors name comes from here too (`_fail`)."""
    global _WORLD
    from core.training.distributed import World

    _WORLD = World.from_env(device, join=join)
    return _WORLD


_WORLD = None  # the last World `_world` found: which process an error came from


def _restarted_from(checkpoint: str | None) -> bool:
    """Whether to go on from the run's --checkpoint file: torchrun restarted this group
    after a failure (TORCHELASTIC_RESTART_COUNT > 0) and the file exists."""
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    return restarts > 0 and checkpoint is not None and Path(checkpoint).is_file()


def _workers(ctx: typer.Context, workers: int | None):
    """With --workers K: this process as rank 0 of K, the other K - 1 running this same
    command (core.training.distributed.LocalWorkers); without, nothing."""
    if workers is None:
        return contextlib.nullcontext()
    from core.training.distributed import LocalWorkers

    args = [*_given_options(ctx.find_root()), ctx.info_name, *_given_options(ctx)]
    return LocalWorkers(workers, [str(Path(__file__).resolve()), *args])


def _given_options(ctx: typer.Context) -> list[str]:
    """The options given to this command (not their defaults), as command-line words."""
    words = []
    for param in ctx.command.params:
        source = getattr(ctx.get_parameter_source(param.name), "name", "DEFAULT")
        if param.param_type_name != "option" or param.name == "workers" or source == "DEFAULT":
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            if value or param.secondary_opts:
                words.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        for item in value if param.multiple else [value]:
            words += [param.opts[0], str(item)]
    return words


def _defaults_text(chosen) -> str:
    """The small-table defaults a run took, and why (core/training/table_defaults.py)."""
    lines = ["defaults for a small table (any option typed wins):"]
    for d in chosen:
        value = ",".join(map(str, d.value)) if isinstance(d.value, tuple) else d.value
        lines.append(f"  --{d.field.replace('_', '-')} {value}: {d.why}")
    return "\n".join(lines)


def _what_it_trains(run, runs: int) -> str:
    """One line: the network, loss, optimizer and data a `train` is about to fit (`run`,
    prepared: its data's sizes and widths)."""
    from core.pipeline.compare import DEFAULT_DATA, describe

    settings, split = run.settings, run.split
    seeds = f"seed {settings.seed}" if runs == 1 else (
        f"{runs} runs, seeds {settings.seed}-{settings.seed + runs - 1}")
    points = f"{len(split.x_train)} training and {len(split.x_test)} test points"
    if settings.data == DEFAULT_DATA:  # else the description names the data
        points += f" of {settings.data}"
    shown = describe([settings], width=None, widths=(run.width, run.out_features))
    return f"training {shown}; {points}, {seeds}"


def _where_it_stopped(e: Any, save: str | None, plugins: Plugins) -> str:
    """The line for a Ctrl-C during a single run: the epoch, and the command that resumes
    from its newest checkpoint, with the plugin options that the run needed."""
    import shlex

    where = f"interrupted during epoch {e.epoch} of {e.epochs}"
    if e.checkpoint is None:
        return (f"{where}; no checkpoint was written, so it cannot resume "
                f"(--checkpoint-every K writes one every K epochs)")
    options = [("--resume", e.checkpoint), ("--save", save), *plugins.options()]
    command = " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in options
                       if value is not None)
    return (f"{where}; the checkpoint of epoch {e.checkpoint_epoch} in {e.checkpoint} is kept; "
            f"resume with: nn-cli train {command}")


def _one_thread() -> None:
    """Run torch's kernels on one thread.

    The tensors here are small (at most batch x 25 with batch 200 by default), so extra
    intra-op threads bring little, and on a busy machine their spinning made training up
    to 50 times slower (measured at batch 10, 5 epochs: 1.6 s on one thread, 76 s on two,
    on the shared 2-core development machine).
    """
    import torch

    torch.set_num_threads(1)


def _check_outputs(runs: int, plot: str | None, csv_path: str | None) -> None:
    from core.files.atomic import check_writable
    from core.files.paths import check_output_dir

    if runs < 1:
        raise SettingsError(f"runs must be an integer >= 1, got {runs!r}")
    if plot is not None:
        check_output_dir(plot, "--plot")
    if csv_path is not None:
        check_writable(csv_path)


def _write_figures(directory: str, curves, registry) -> None:
    from core.pipeline.figures import write_figures

    for path in write_figures(directory, curves, registry):
        typer.echo(f"wrote {path}", err=True)  # status, beside the progress


def _many(kind, help_text: str):
    """An option that may be given several times; each value is one variant to compare."""
    return Annotated[Optional[list[kind]], typer.Option(help=help_text + " Repeat to compare.")]


@app.command()
@with_plugins
def compare(
    ctx: typer.Context,
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
    device: _many(str, "cpu or cuda.") = None,
    seed: Annotated[int, typer.Option(help="First seed of every configuration's runs.")] = DEFAULTS.seed,
    runs: Annotated[int, typer.Option(help="Models trained per configuration.")] = 1,
    one_at_a_time: OneAtATimeOpt = False,
    plot: Annotated[Optional[str], typer.Option(help=PLOT_HELP)] = None,
    csv_path: Annotated[Optional[str], typer.Option("--csv", help="Also write the table as CSV to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
    layers: _many(str, "The whole network by name (replaces --act/--hidden).") = None,
    plugins: Plugins = None,
    data: _many(str, "A dataset with options, or a file (`nn-cli list dataset`).") = None,
    target: TargetOpt = None,
    test_fraction: TestFractionOpt = DEFAULTS.test_fraction,
    val_fraction: ValFractionOpt = DEFAULTS.val_fraction,
    patience: PatienceOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Train every combination of the given values `--runs` times; print mean ± std.

    Options not given take each dataset's defaults, as `nn-cli train` does.

    Under torchrun (or with --workers K) the (configuration, seed) pairs are split between
    the processes; rank 0 gathers the results, prints and writes the same table, JSON, CSV
    and figures as one process would.
    """
    given = {
        "act": act, "loss": loss, "init": init, "optimizer": optimizer,
        "optimizer_args": opt and [parse_optimizer_args(o) for o in opt],
        "hidden": hidden and [parse_widths(h) for h in hidden], "epochs": epochs, "lr": lr,
        "schedule": schedule, "batch_size": batch_size, "preprocess": preprocess, "dtype": dtype,
        "device": device, "layers": layers, "data": data,
    }
    _refuse_beside_layers(layers, [f"--{key}" for key in ("act", "hidden") if given[key]])
    variations = {key: list(dict.fromkeys(values)) for key, values in given.items() if values}
    with _workers(ctx, workers):  # --workers K: the other K - 1 start now
        _check_outputs(runs, plot, csv_path)
        from core.pipeline.compare import configurations, plan, run_plan
        from core.pipeline.progress import runs_reporter

        base = TrainSettings(seed=seed, target=target, test_fraction=test_fraction,
                             val_fraction=val_fraction, patience=patience)
        configurations(base, variations)  # checks every value before any work
        _one_thread()
        registry = plugins.registry()
        typed = _typed(ctx) & {"target", "test_fraction", "val_fraction", "patience"}
        # every configuration resolved and checked, before the processes join
        planned = plan(base, variations, runs, registry, not one_at_a_time, typed)
        # the sweep joins the group to gather: until then the ranks take work as they come
        world = _world(planned[0].settings.device, join=False)
        quiet = world is not None and not world.main  # only rank 0 reports
        longest = max(r.settings.epochs for r in planned)
        varied = [key for key, values in variations.items() if len(values) > 1]
        try:
            with runs_reporter(runs * len(planned), longest, to_stderr=True, quiet=quiet) as progress:

                progress.configurations = len(planned)

                def next_configuration(index: int, name: str) -> None:
                    progress.label, progress.offset = name, index * runs

                comparison = run_plan(planned, varied, runs, registry, progress.on_epoch,
                                      progress.on_run, next_configuration,
                                      together=not one_at_a_time, world=world)
        except KeyboardInterrupt:
            raise Stopped(f"interrupted with {progress.finished} of {runs * len(planned)} runs "
                          f"finished; nothing was written") from None
        if quiet:
            return
        if plot is not None:
            _write_figures(plot, list(zip(comparison.labels, comparison.results)), registry)
        if csv_path is not None:
            comparison.write_csv(csv_path)
        if as_json:
            typer.echo(json.dumps(comparison.to_dict()))
        else:
            typer.echo(comparison.table())


def _given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among `names` that the command line gave, as flags (`--batch-size`)."""
    return ["--" + name.replace("_", "-") for name in names
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"]


def _refuse_settings_beside_resume(ctx: typer.Context) -> None:
    """The checkpoint fixes the run: a setting given beside --resume would be ignored."""
    given = _given(ctx, SETTING_OPTIONS)
    if given:
        raise SettingsError(
            f"--resume continues the checkpoint's run with its own settings; drop {', '.join(given)}"
        )


def _refuse_beside_layers(layers: Any, given: list[str]) -> None:
    """--layers is the whole network: --act and --hidden, which shape the default one, would
    be ignored beside it."""
    if layers and given:
        raise SettingsError(
            f"--layers gives the whole network, so {' and '.join(given)} would be ignored; "
            f"drop {' and '.join(given)}, or write the activation and widths into --layers"
        )


@app.command()
@with_plugins
def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model file written by `nn-cli train --save`.")],
    input: Annotated[str, typer.Option("--input", help="CSV or JSON rows of features.")],
    output: Annotated[Optional[str], typer.Option(help="Write here (atomically) instead of stdout.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv or json (default: by --output's extension, else csv).")] = None,
    proba: Annotated[bool, typer.Option("--proba", metavar="", help="Add one probability per class (p_NAME columns).")] = False,
    plugins: Plugins = None,
) -> None:
    """Predict the score and class (its name) of every row of a file with a saved model;
    a regression model predicts its targets."""
    from core.files.inference import predict_file

    registry = plugins.registry()
    text = predict_file(model, input, output=output, fmt=fmt, registry=registry, proba=proba)
    if output is None:
        typer.echo(text, nl=False)


@app.command()
@with_plugins
def generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A text model written by `nn-cli train --data pydoc --save`.")],
    prompt: Annotated[str, typer.Option(help="The text to go on from.")] = "\n",
    tokens: Annotated[int, typer.Option(help="How many characters (or bytes) to write.")] = 200,
    temperature: Annotated[float, typer.Option(help="Divide the logits by this; lower is safer, 0 always takes the likeliest.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Draw among the K likeliest tokens only.")] = None,
    seed: Annotated[int, typer.Option(help="The same seed writes the same text.")] = 0,
    plugins: Plugins = None,
) -> None:
    """Write text with a saved character-level model, streaming it as it is drawn (a
    key/value cache: the prefix is never recomputed)."""
    from core.files.generation import generate_text
    from core.network.sampling import Sampling

    sampling = Sampling(temperature=temperature, top_k=top_k)
    generate_text(model, prompt, tokens, sampling=sampling, seed=seed, registry=plugins.registry(),
                  on_text=lambda piece: typer.echo(piece, nl=False))
    typer.echo("")


@app.command()
@with_plugins
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model file written by `nn-cli train --save`.")],
    input: Annotated[Optional[str], typer.Option("--input", help="CSV or JSON rows with a label column; default: fresh points.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fresh test set.")] = 0,
    n: Annotated[int, typer.Option(help="Points in the fresh test set.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object.")] = False,
    target: Annotated[Optional[str], typer.Option(
        help="The file's label column (default: the training file's target column, else 'label').")] = None,
    plugins: Plugins = None,
) -> None:
    """Report a saved model's error on a labelled file, or without one on fresh points of
    its data (a dataset that draws as many as asked, such as the disk), else on its run's
    own test rows. A model of other data than the disk gets what `train` reports for its
    test split: per-class precision, recall, F1 and the confusion matrix, or RMSE, MAE and R^2."""
    from core.files.inference import evaluate_model
    from core.pipeline.prepare import test_rows

    registry = plugins.registry()
    result = evaluate_model(model, input_path=input, seed=seed, n=n, registry=registry,
                            test_split=test_rows, target=target)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        figure = f"RMSE {result.error:.4g}" if result.measure == "rmse" else f"error {result.error:.2%}"
        typer.echo(f"{figure} on {result.n} points ({result.source})")
        if result.metrics is not None:
            from core.data.metrics import text_report

            typer.echo(f"\n{text_report(result.metrics)}")


@app.command()
@with_plugins
def tune(
    ctx: typer.Context,
    param: Annotated[list[str], typer.Option(
        metavar="NAME=SPEC",
        help="A training option to search (repeatable): lr=1e-4..0.1:log, hidden=8..128, "
             "act=tanh|relu, opt.weight_decay=1e-5..0.1:log, depth=1..3; NAME=VALUE fixes one.")],
    data: DataOpt = DEFAULTS.data,
    target: TargetOpt = None,
    trials: Annotated[int, typer.Option(help="Trials to finish (complete or pruned), over the whole study.")] = 50,
    timeout: Annotated[Optional[float], typer.Option(help="Stop searching after this many seconds.")] = None,
    cv: Annotated[Optional[int], typer.Option(metavar="K", help="Score each trial by K-fold cross-validation on the training rows (default: 5 below 1000 training rows).")] = None,
    holdout: Annotated[Optional[float], typer.Option(metavar="F", help="Score each trial on this share of the training rows (default: 0.2 from 1000 training rows).")] = None,
    objective: Annotated[str, typer.Option(help="What to minimise on the held-out rows: loss or error (regression: RMSE).")] = "loss",
    prune: Annotated[bool, typer.Option(help="Stop trials whose held-out loss lags the median's.")] = True,
    study: Annotated[Optional[str], typer.Option(help="The study's name (default: tune-DATA); the same name goes on with it.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        metavar="URL", help="Where the study lives: sqlite:///FILE (default ./STUDY.db) or "
                            "postgresql+psycopg://user@host/db, shared by every process that names it.")] = None,
    workers: Annotated[Optional[int], typer.Option(metavar="K", help="Search in K local processes sharing the study.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data's split, the folds, the weights and the sampler.")] = DEFAULTS.seed,
    save: Annotated[Optional[str], typer.Option(help="Train the best options on all training rows and write the model here.")] = None,
    plot: Annotated[Optional[str], typer.Option(help="Write Optuna's history.png and importances.png into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
    plugins: Plugins = None,
) -> None:
    """Search training options with Optuna: each trial trains on the training rows and is
    scored on rows it did not see; at the end, the trials ranked, the best options and the
    `nn-cli train` command that trains them. Run the same command again to go on with a
    study that was stopped or killed."""
    from core.pipeline.search_space import parse_space

    space = parse_space(param)  # the text, once, before anything else
    if plot is not None or save is not None:
        _check_outputs(1, plot, save)
    registry = plugins.registry()
    _one_thread()
    from core.pipeline import tune as tuning
    from core.pipeline.resolve import resolve

    base = TrainSettings(data=data, target=target, seed=seed)
    given = {"data", "target", "seed", *(d.name for d in space.dimensions)}
    given |= {"hidden"} if "depth" in given else set()
    given |= {"optimizer_args"} if any(n.startswith("opt") for n in given) else set()
    name = study or "tune-" + _data_stem(data)
    base = resolve(base, registry, given).settings
    scoring = tuning.choose_scoring(base, space, registry, cv, holdout)  # folds below 1000 rows
    request = tuning.TuneRequest(
        base, space, trials=trials, timeout=timeout, cv=scoring.cv, holdout=scoring.holdout,
        epochs_by_folds=scoring.epochs_by_folds, why=scoring.why, objective=objective,
        study=name, storage=storage or tuning.default_storage(name), pruning=prune)
    tuning.check_request(request, registry)  # every corner of the space, before any trial
    worker = os.environ.get(tuning.RANK_ENV, "0") != "0"
    command = [str(Path(__file__).resolve()), *_given_options(ctx.find_root()), ctx.info_name,
               *_given_options(ctx)]
    out = sys.stderr  # progress on stderr: stdout holds the results alone

    def progress(row: dict, done: int, wanted: int) -> None:
        from core.pipeline.tune import format_params

        if row["state"] == "pruned":
            what = f"pruned at epoch {row.get('pruned_at_epoch', '?')}"
        else:
            error = (f"RMSE {row['error']:.4g}" if "r2" in row
                     else f"error {row['error']:.2%}")
            what = f"{objective} {row['value']:.4g}  {error}"
            what += f" at epoch {row['epochs']}" if "epochs" in row else ""
        print(f"trial {row['number']} ({done}/{wanted} done): {what}  {format_params(row['params'])}"
              f"  {row['seconds'] or 0:.1f} s", file=out, flush=True)

    import time

    started = time.perf_counter()
    try:
        found = tuning.run_study(request, registry, workers=workers or 1, worker_command=command,
                                 on_trial=None if worker else progress)
    except KeyboardInterrupt:
        raise Stopped(f"interrupted; the study {name!r} is kept in {request.storage}: run the "
                      f"same command to go on") from None
    if worker:
        return
    result = tuning.report(found, request, registry, time.perf_counter() - started)
    if plot is not None:
        for path in tuning.write_plots(found, plot):
            typer.echo(f"wrote {path}", err=True)
    if save is not None:
        from core.files.atomic import write_locks
        from core.files.model_file import save_model

        with write_locks(save):
            save_model(save, tuning.refit(result, registry), registry=registry)
        typer.echo(f"wrote {save} (the best options trained on all training rows)", err=True)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.table())


def _data_stem(data: str) -> str:
    """A study's default name from --data: a file's stem, or the dataset's name."""
    from core.data.dataset import is_file_text

    return Path(data).stem if is_file_text(data) else data.partition(":")[0]


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
@with_plugins
def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    host: Annotated[str, typer.Option(
        help="Address to bind; anything but 127.0.0.1 lets other machines train here.")] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", metavar="", help="Open the page in a browser.")] = False,
    plugins: Plugins = None,
) -> None:
    """Serve the playground: pick data and a network in the browser, watch it train here."""
    if not 0 <= port <= 65535:
        raise SettingsError(f"port must be an integer from 0 to 65535, got {port}")
    if not host.strip():  # uvicorn would bind every address and print `binding :`
        raise SettingsError(f"host must be an address or name, got {host!r}; 127.0.0.1 serves "
                            f"this machine only, 0.0.0.0 every address")
    try:
        import uvicorn  # noqa: F401  (the extra's other half; playground.serve uses it)

        from playground import create_app
    except ImportError as e:
        raise SettingsError(
            f"nn-cli serve needs the serve extra ({e.name} is missing): "
            f"pip install 'nn-scratch[serve]'"
        ) from None
    registry = plugins.registry()
    from playground.guards import allowed_hosts

    if host not in LOCAL_HOSTS:
        typer.echo(f"nn-cli: warning: binding {host}: anyone who can reach this address can "
                   f"train networks on this machine; the playground has no login; it answers "
                   f"requests addressed to {', '.join(allowed_hosts(host))} only", err=True)
    _one_thread()
    from playground.serve import make_server, run

    run(make_server(create_app(registry, host=host), host, port), open_browser=open_browser, announce=lambda url: typer.echo(
        f"nn-cli: playground at {url} (Ctrl-C stops it)"))


def main() -> None:
    """The console entry (nn-cli): run the command, then leave without the interpreter's
    teardown once torch is loaded.

    NOTE: tearing down an interpreter that imported torch takes about 1 s (measured on the
    2-core development machine: 0.98 s after `import torch` alone), paid after the output
    is out; under --workers, rank 0 waits for every worker's too. Files are written whole
    and closed by then (core/files/atomic.py), so only the streams need flushing.
    """
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    if "torch" not in sys.modules:
        sys.exit(code)
    if not isinstance(code, int):  # sys.exit("text") or sys.exit(None), as Python reads them
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (nn-cli ... | head): Python's own exit would report 120
        code = code or 120
    os._exit(code)


if __name__ == "__main__":
    main()
