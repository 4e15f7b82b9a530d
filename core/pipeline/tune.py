"""`nn-cli tune`: a hyperparameter search on Optuna, over any training option.

Optuna's define-by-run loop: each trial draws its options from the search space
(core/pipeline/search_space.py), trains on the run's training rows, and is scored on rows
it did not train on: k folds (`cv`) or one held-out share (`holdout`); a table of fewer
than CV_BELOW_ROWS training rows gets 5 folds unless told otherwise (`choose_scoring`).
The score is the mean held-out loss (or error) over the folds; after every epoch of the
first fold the trial reports its held-out loss, and the median pruner stops one that lags.
With k folds where the run would stop early on a validation share (the small-table
defaults), the folds choose the epochs instead (`epochs_by_folds`, as xgboost.cv does):
the refit then trains that many epochs on all training rows, no row kept back.
The run's own test split is never seen by a trial: `nn-cli train` with the best options
still reports an honest test error.

The study lives in a database (SQLite by default, a file beside the command; PostgreSQL
through a URL), so a tune killed or stopped goes on where it stopped when the same command
runs again, and processes (`workers`, or other machines on one URL) share one study.
Every process sends a heartbeat while it trains; a trial whose process died is failed once
its heartbeat is stale and run again with the same options, so a resumed tune ends with
exactly the number of trials asked for.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.data.dataset import CLASSIFICATION, Dataset
from core.data.split import split_indices
from core.errors import NNError, SettingsError
from core.network.protocols import evaluating
from core.data.dataset import parse_data
from core.pipeline.prepare import check, raw_split
from core.pipeline.resolve import EVERY_FIELD, load_dataset, resolve
from core.pipeline.train import train
from core.pipeline.search_space import SearchSpace, check_names
from core.plugin.registry import Registry
from core.training.components import make_loss
from core.plugin.hookspecs import hookimpl
from core.training.evaluate import forward_in_slices, output_errors, output_metrics
from core.training.result import TrainResult
from core.training.settings import TrainSettings

OBJECTIVES = ("loss", "error")
# Fewer training rows than this: one 20 % holdout scores a trial on under 200 rows, too few
# to rank trials (diabetes' 248 rows: 50; its tune reached R^2 0.36 by a holdout, 0.42 by
# 5 folds picking the epochs, bench/small_tables.py), so k folds score every row, at k
# times the training.
CV_BELOW_ROWS = 1000
DEFAULT_CV = 5
DEFAULT_HOLDOUT = 0.2
HEARTBEAT_S = 1  # how often a training process says it is alive
GRACE_S = 4  # a running trial silent this long belongs to a dead process
RANK_ENV = "NN_TUNE_RANK"  # set in the processes `workers` starts: 1 .. K - 1
FOLD_DATASET = "tune_fold"  # the folds, as a dataset the registry builds (tune_fold:index=I)


class TuneError(NNError):
    """A tune that cannot start or go on: names the study, the storage and what to change."""


@dataclass(frozen=True)
class TuneRequest:
    """What one `nn-cli tune` searches, how it scores a trial, and where the study lives."""

    base: TrainSettings  # every option no --param fixes or searches (resolved defaults)
    space: SearchSpace  # the --param dimensions
    trials: int = 50  # trials to finish (complete or pruned), counted over the whole study
    timeout: float | None = None  # seconds this process searches, at most
    cv: int | None = None  # k-fold cross-validation on the training rows ...
    holdout: float = 0.2  # ... else one held-out share of them
    objective: str = "loss"  # minimised: the mean held-out loss, or error (regression: RMSE)
    study: str = "tune"  # the study's name in the storage
    storage: str = "sqlite:///tune.db"  # an SQLAlchemy URL: sqlite:///FILE, postgresql://...
    pruning: bool = True  # stop trials whose held-out loss lags the median
    # k folds choose the epochs: each fold trains without a validation share and stops
    # `patience` epochs past its lowest held-out loss; a trial is scored at the epoch of
    # the lowest mean over the folds, and the best is refit for that many epochs on all rows
    epochs_by_folds: bool = False
    why: str = ""  # why this scoring (k folds or a holdout): as told, or for the rows' number

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise SettingsError(f"trials must be an integer >= 1, got {self.trials!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise SettingsError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if self.cv is not None and (isinstance(self.cv, bool) or not isinstance(self.cv, int)
                                    or self.cv < 2):
            raise SettingsError(f"cv must be an integer >= 2 (folds), got {self.cv!r}")
        if not 0 < self.holdout < 1:
            raise SettingsError(f"holdout must be a number in (0, 1), got {self.holdout!r}")
        if self.objective not in OBJECTIVES:
            raise SettingsError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                                f"got {self.objective!r}")
        if self.objective == "loss" and any(d.name == "loss" for d in self.space.searched):
            raise SettingsError("losses of different kinds cannot be compared: with --param "
                                "loss=A|B, score the trials by --objective error")

    def record(self) -> dict[str, Any]:
        """What makes a study this search: a study resumed must have been started with it."""
        return {"base": self.base.to_dict(), "space": self.space.texts, "cv": self.cv,
                "holdout": None if self.cv else self.holdout, "objective": self.objective,
                **({"epochs_by_folds": True} if self.epochs_by_folds else {})}


# -- how trials are scored ----------------------------------------------------------------

@dataclass(frozen=True)
class Scoring:
    """How trials are scored: k folds or one holdout, whether the folds choose the epochs,
    and why (`choose_scoring`); TuneRequest takes its fields."""

    cv: int | None
    holdout: float
    epochs_by_folds: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"cv": self.cv, "holdout": None if self.cv else self.holdout,
                "epochs_by_folds": self.epochs_by_folds, "why": self.why}


def choose_scoring(base: TrainSettings, space: SearchSpace, registry: Registry,
                   cv: int | None = None, holdout: float | None = None) -> Scoring:
    """`cv` or `holdout` as the user gave them (not both); neither: 5 folds on a table of
    fewer than CV_BELOW_ROWS training rows, else a 20 % holdout. With folds, and early
    stopping in `base` (not searched as val_fraction), the folds choose the epochs."""
    if cv is not None and holdout is not None:
        raise SettingsError(f"give --cv K or --holdout F, not both (got --cv {cv} and "
                            f"--holdout {holdout})")
    if cv is not None:
        why = f"{cv}-fold cross-validation, as asked (--cv {cv})"
    elif holdout is not None:
        why = f"a {holdout:.0%} holdout, as asked (--holdout {holdout:g})"
    else:
        rows = training_rows(base, registry)
        if rows < CV_BELOW_ROWS:
            cv = DEFAULT_CV
            why = (f"{DEFAULT_CV}-fold cross-validation: {rows} training rows, fewer than "
                   f"{CV_BELOW_ROWS} (a {DEFAULT_HOLDOUT:.0%} holdout would be "
                   f"{round(rows * DEFAULT_HOLDOUT)} rows; --holdout F for one)")
        else:
            why = (f"a {DEFAULT_HOLDOUT:.0%} holdout of {rows} training rows "
                   f"(--cv K for k folds)")
    by_folds = (cv is not None and base.val_fraction > 0 and base.patience is not None
                and all(d.name != "val_fraction" for d in space.dimensions))
    if by_folds:
        why += ("; the folds pick the epochs: each trains until its held-out loss stops "
                f"falling (patience {base.patience}), a trial scores at the epoch of the lowest "
                "mean, and the best trains that many epochs on all training rows")
    return Scoring(cv, DEFAULT_HOLDOUT if holdout is None else holdout, by_folds, why)


def training_rows(settings: TrainSettings, registry: Registry) -> int:
    """The rows a tune searches on: the run's training rows, its test split left out."""
    return len(raw_split(dataclasses.replace(settings, val_fraction=0.0, patience=None),
                         registry).x_train)


# -- the folds ---------------------------------------------------------------------------

class Folds:
    """The training rows cut into folds: fold i trains on all but its held-out rows.

    Registered as the dataset `tune_fold` (option `index`), so that a trial is an ordinary
    `train()` whose test split is the fold's held-out rows."""

    def __init__(self, datasets: list[Dataset]):
        self.datasets = datasets

    @hookimpl
    def register_datasets(self, register):
        def tune_fold(index: int) -> Dataset:
            """A fold of the training rows of the data `nn-cli tune` searches on."""
            return self.datasets[index]
        register(FOLD_DATASET, tune_fold, override=True)


def make_folds(settings: TrainSettings, registry: Registry, cv: int | None, holdout: float) -> list[Dataset]:
    """The run's training rows (its test split and validation share left out) as k folds,
    stratified for classification, or as one held-out share; drawn from the run's seed."""
    split = raw_split(dataclasses.replace(settings, val_fraction=0.0, patience=None), registry)
    data, x, y = split.dataset, split.x_train, split.y_train
    generator = torch.Generator().manual_seed(settings.seed * 16 + 4)  # a stream of its own
    if cv is None:
        keep, held = split_indices(y, holdout, generator, task=data.task, what="holdout")
        parts = [held]
    else:
        parts = _k_parts(y, cv, generator, data.task)
    folds = []
    for held in parts:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        folds.append(dataclasses.replace(
            data, name=f"{data.name} (tune fold)", x_train=x[keep], y_train=y[keep],
            x_test=x[held], y_test=y[held]))
    return folds


def _k_parts(y: torch.Tensor, k: int, generator: torch.Generator, task: str) -> list[torch.Tensor]:
    """k disjoint held-out index sets covering every row; each class dealt round the folds."""
    if len(y) < k:
        raise SettingsError(f"cv {k} needs at least {k} training rows, got {len(y)}")
    if task not in CLASSIFICATION:
        order = torch.randperm(len(y), generator=generator)
        return [order[i::k].sort().values for i in range(k)]
    parts: list[list[int]] = [[] for _ in range(k)]
    dealt = 0
    for c in torch.unique(y).tolist():
        rows = (y == c).nonzero().view(-1)
        for row in rows[torch.randperm(len(rows), generator=generator)].tolist():
            parts[dealt % k].append(row)
            dealt += 1
    return [torch.tensor(sorted(p), dtype=torch.long) for p in parts]


def held_out(loss, model, data) -> dict[str, float]:
    """The network's loss, error and (regression) R^2 on its held-out rows, now."""
    with torch.set_grad_enabled(False), evaluating(model):
        out = forward_in_slices(model, data.x_test)
        how = dict(task=data.task, one_hot=data.one_hot, preprocessing=data.preprocessing)
        scores = {"loss": loss.forward(out, data.y_test).item(),
                  "error": output_errors(out, loss, data.labels_test, **how).item()}
        if data.task == "regression":
            scores["r2"] = output_metrics(out, loss, data.labels_test, class_names=(), **how)["r2"]
    return scores


def _stalled(curve: list[dict[str, float]], patience: int | None) -> bool:
    """Whether the held-out loss has not fallen for `patience` epochs."""
    if patience is None:
        return False
    losses = [c["loss"] for c in curve]
    best = min(range(len(losses)), key=losses.__getitem__)
    return len(losses) - 1 - best >= patience


class _FoldDone(Exception):
    """A fold's held-out loss stopped falling: its curve is complete."""


def at_best_mean_epoch(folds: list[dict[str, list[float]]]) -> tuple[int, list[dict[str, float]]]:
    """The epoch (from 1) whose held-out loss, averaged over the folds, is lowest, and each
    fold's scores there (xgboost.cv's rule). A fold that stopped sooner counts with its
    last epoch's scores: its loss had stopped falling."""
    longest = max(len(f["loss"]) for f in folds)
    padded = [{k: v + [v[-1]] * (longest - len(v)) for k, v in f.items()} for f in folds]
    mean = [sum(f["loss"][e] for f in padded) / len(padded) for e in range(longest)]
    best = min(range(longest), key=lambda e: (not math.isfinite(mean[e]), mean[e]))
    return best + 1, [{k: v[best] for k, v in f.items()} for f in padded]


# -- the study ---------------------------------------------------------------------------

def _optuna():
    try:
        import optuna
    except ImportError:
        raise SettingsError("nn-cli tune needs the tune extra (optuna is missing): "
                            "pip install 'nn-scratch[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_study(request: TuneRequest, *, seed: int, rank: int = 0):
    """The study in its storage, made or loaded; refused if it was made for another search."""
    optuna = _optuna()
    engine = {"connect_args": {"timeout": 60}} if request.storage.startswith("sqlite") else {}
    for attempt in range(3):
        try:
            storage = optuna.storages.RDBStorage(
                request.storage, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            break
        except Exception as e:  # a URL SQLAlchemy cannot open, a server that does not answer
            # NOTE: processes that start together on a new database race to create its
            # tables; the loser's CREATE fails, and a second try finds them made.
            if attempt == 2:
                raise TuneError(f"cannot open the study storage {request.storage!r}: "
                                f"{_first_line(e)}") from None
            time.sleep(0.5 + rank * 0.1)
    # Each process, and each resumption, draws its own sequence: no two propose alike.
    done = _existing_trials(optuna, storage, request.study)
    sampler = optuna.samplers.TPESampler(seed=(seed * 1009 + done * 7919 + rank) % 2**32)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
              if request.pruning else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage, study_name=request.study, direction="minimize",
                                load_if_exists=True, sampler=sampler, pruner=pruner)
    record = request.record()
    stored = study.user_attrs.get("nn_tune")
    if stored is None and rank == 0:
        study.set_user_attr("nn_tune", record)
    elif stored is not None and stored != _jsonish(record):
        changed = sorted(k for k in record if _jsonish(record)[k] != stored.get(k))
        raise TuneError(
            f"study {request.study!r} in {request.storage} was started with other options "
            f"({', '.join(changed)} differ); give the same options to go on with it, or "
            f"another --study to start a new one")
    return study


def _jsonish(value: Any) -> Any:
    """`value` as it reads back from the storage (JSON: tuples become lists)."""
    import json

    return json.loads(json.dumps(value))


def _existing_trials(optuna, storage, name: str) -> int:
    try:
        return len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:
        return 0


def finished(study, optuna) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


class Surplus(Exception):
    """A trial asked for when the others already make up the number: dropped untrained."""


def run_study(
    request: TuneRequest,
    registry: Registry,
    *,
    seed: int | None = None,
    rank: int | None = None,
    workers: int = 1,
    worker_command: Sequence[str] | None = None,
    on_trial: Callable[[dict[str, Any], int, int], None] | None = None,
) -> Any:
    """Search until the study holds `request.trials` finished trials (or the timeout);
    return the study. `rank` (from NN_TUNE_RANK) > 0 marks a process `workers` started.

    With `workers` K > 1 this process starts K - 1 more running `worker_command` (the same
    command; they share the study through its storage) and waits for them at the end.
    `on_trial(row, finished, wanted)` follows each trial this process ran.
    """
    optuna = _optuna()
    rank = int(os.environ.get(RANK_ENV, "0")) if rank is None else rank
    seed = request.base.seed if seed is None else seed
    folds = make_folds(request.base, registry, request.cv, request.holdout)
    fold_source = registry.records.get("nn-tune-folds")
    if fold_source is None:
        registry.add_plugin(Folds(folds), name="nn-tune-folds")
    else:  # a second tune in this process: the same plugin, these folds
        registry.plugin_manager.get_plugin("nn-tune-folds").datasets = folds
    study = open_study(request, seed=seed, rank=rank)
    if rank == 0:
        _fail_stale(study, optuna)
    procs = _start_workers(workers, worker_command) if rank == 0 else []
    objective = Objective(request, registry, len(folds), optuna)

    def after_trial(study, trial) -> None:
        done = finished(study, optuna)
        if done >= request.trials:
            study.stop()
        if on_trial is not None and trial.state != optuna.trial.TrialState.FAIL:
            on_trial(trial_row(trial), done, request.trials)

    try:
        if finished(study, optuna) < request.trials:
            study.optimize(objective, timeout=request.timeout, callbacks=[after_trial],
                           catch=(Surplus, NNError), gc_after_trial=False)
    except BaseException:
        _stop_workers(procs)
        raise
    failed = _wait_workers(procs)
    if failed:
        raise TuneError(failed)
    return study


def _fail_stale(study, optuna) -> None:
    """Trials left running by a process of this machine that is gone (SIGKILL): once their
    heartbeat is stale they are failed, and the retry callback queues their options again.
    Trials of live processes, or of other machines, are left to the heartbeat: every
    process fails the stale ones before each trial it starts."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    # (a trial without its process was killed, or is starting, in its first instant)
    if any(_dead_here(t.user_attrs.get("process", "")) or "process" not in t.user_attrs
           for t in running):
        time.sleep(GRACE_S + HEARTBEAT_S)  # until its last heartbeat is stale
        optuna.storages.fail_stale_trials(study)


def _dead_here(process: str) -> bool:
    """Whether "host:pid" names a process of this machine that no longer runs."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is it there?
    except ProcessLookupError:
        return True
    except PermissionError:  # there, another user's
        return False
    return False


class Objective:
    """One trial: options drawn, every fold trained, the mean held-out score returned."""

    def __init__(self, request: TuneRequest, registry: Registry, n_folds: int, optuna) -> None:
        self.request, self.registry, self.n_folds, self.optuna = request, registry, n_folds, optuna

    def __call__(self, trial) -> float:
        optuna, request = self.optuna, self.request
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")  # who runs it
        self._check_not_surplus(trial)
        values = request.space.suggest(trial)
        try:
            settings = request.space.settings(request.base, values)
        except NNError as e:
            trial.set_user_attr("failed", str(e))
            raise
        started = time.perf_counter()
        folds = [self._fold(trial, settings, index, started) for index in range(self.n_folds)]
        if request.epochs_by_folds:
            epoch, folds = at_best_mean_epoch(folds)
            trial.set_user_attr("epoch", epoch)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        for name in ("loss", "error", "r2"):
            if all(f.get(name) is not None for f in folds):
                trial.set_user_attr(name, sum(f[name] for f in folds) / len(folds))
        trial.set_user_attr("settings", settings.to_dict())
        score = trial.user_attrs["loss" if request.objective == "loss" else "error"]
        return score if math.isfinite(score) else float("inf")

    def _fold(self, trial, settings: TrainSettings, index: int, started: float) -> dict[str, Any]:
        """Fold `index` trained and scored: its held-out loss, error and R^2 (regression) at
        the end; with `epochs_by_folds`, those of every epoch instead (lists)."""
        optuna, request = self.optuna, self.request
        by_epoch, patience = request.epochs_by_folds, settings.patience
        if by_epoch:  # the held-out fold, not a validation share, picks the epoch
            settings = dataclasses.replace(settings, val_fraction=0.0, patience=None)
        fold = dataclasses.replace(settings, data=f"{FOLD_DATASET}:index={index}")
        loss = make_loss(self.registry, settings)
        seen: dict[str, Any] = {"curve": []}

        def watch(epoch: int, model, data) -> None:
            seen["data"] = data
            if by_epoch:
                seen["curve"].append(held_out(loss, model, data))
            if index == 0 and request.pruning:  # the first fold's held-out loss, per epoch
                now = seen["curve"][-1] if by_epoch else held_out(loss, model, data)
                trial.report(now["loss"], epoch)
                if trial.should_prune():
                    trial.set_user_attr("seconds", time.perf_counter() - started)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            if by_epoch and _stalled(seen["curve"], patience):
                raise _FoldDone

        try:
            # the trial's settings are whole: no default is applied again (on the fold's size)
            result: TrainResult = train(fold, self.registry, given=EVERY_FIELD, watch=watch)
        except _FoldDone:
            result = None
        except NNError as e:  # a diverged run, options that do not fit the data
            trial.set_user_attr("failed", _first_line(e))
            raise
        if by_epoch:
            return {name: [c[name] for c in seen["curve"]] for name in seen["curve"][0]}
        return held_out(loss, result.model, seen["data"])

    def _check_not_surplus(self, trial) -> None:
        """Finished trials and those running before this one already make up the number
        (another process is finishing the last): this one is dropped, untrained."""
        study, optuna = trial.study, self.optuna
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        ahead = sum(1 for t in running if t.number < trial.number)
        if finished(study, optuna) + ahead >= self.request.trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise Surplus(f"trial {trial.number}: {self.request.trials} trials are under way")


def trial_row(trial) -> dict[str, Any]:
    """A trial as a row of the report: number, state, score, error, options, seconds."""
    attrs = trial.user_attrs
    row = {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
           "loss": attrs.get("loss"), "error": attrs.get("error"), "params": dict(trial.params),
           "seconds": attrs.get("seconds")}
    if "r2" in attrs:
        row["r2"] = attrs["r2"]
    if "epoch" in attrs:  # the epochs the folds chose
        row["epochs"] = attrs["epoch"]
    if trial.state.name == "PRUNED" and trial.intermediate_values:
        row["pruned_at_epoch"] = max(trial.intermediate_values)
    return row


# -- workers -----------------------------------------------------------------------------

def _start_workers(workers: int, command: Sequence[str] | None) -> list[subprocess.Popen]:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SettingsError(f"workers must be an integer >= 1, got {workers!r}")
    if workers == 1:
        return []
    if not command:
        raise SettingsError("workers > 1 needs the command the other processes run")
    root = str(Path(__file__).resolve().parents[2])  # this checkout, installed or not
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return [subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env | {RANK_ENV: str(rank)})
            for rank in range(1, workers)]


def _wait_workers(procs: list[subprocess.Popen]) -> str | None:
    """Wait for every worker; the first failure's last line, or None."""
    failure = None
    for rank, proc in enumerate(procs, start=1):
        _, err = proc.communicate()
        if proc.returncode != 0 and failure is None:
            lines = [line for line in (err or "").splitlines() if line.strip()]
            failure = f"tune worker {rank} failed: " + (lines[-1] if lines else f"exit status {proc.returncode}")
    return failure


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the report --------------------------------------------------------------------------

@dataclass
class TuneReport:
    """What a search found: the trials ranked, the best options and how to train them."""

    study: str
    storage: str
    objective: str
    task: str
    trials: list[dict[str, Any]]  # finished trials, best first (pruned after complete)
    counts: dict[str, int]  # complete, pruned, failed
    best_settings: TrainSettings | None
    command: str | None  # the `nn-cli train` that reproduces the best trial on all training rows
    seconds: float = 0.0  # this process's search
    scoring: dict[str, Any] | None = None  # Scoring.to_dict(): k folds or a holdout, and why

    @property
    def best(self) -> dict[str, Any] | None:
        return self.trials[0] if self.trials and self.trials[0]["state"] == "complete" else None

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "storage": self.storage, "objective": self.objective,
                "task": self.task, "counts": self.counts, "seconds": self.seconds,
                "best": self.best and {**self.best, "settings": self.best_settings.to_dict()},
                "command": self.command, "scoring": self.scoring, "trials": self.trials}

    def table(self, top: int = 10) -> str:
        regression = self.task == "regression"
        lines = [f"study {self.study!r} in {self.storage}: {self.counts['complete']} complete, "
                 f"{self.counts['pruned']} pruned, {self.counts['failed']} failed"]
        if self.scoring is not None:
            lines.append(f"scored by {self.scoring['why']}")
        if not self.trials:
            return "\n".join(lines)
        error = "RMSE" if regression else "error"
        head = f"{'rank':>4}  {'trial':>5}  {self.objective:>9}  {error:>8}" + (
            f"  {'R^2':>7}" if regression else "")
        lines += ["", head + "  options"]
        for rank, row in enumerate(self.trials[:top], start=1):
            value = "pruned" if row["state"] == "pruned" else f"{row['value']:.4g}"
            err = "" if row["error"] is None else (
                f"{row['error']:.4g}" if regression else f"{row['error']:.2%}")
            line = f"{rank:>4}  {row['number']:>5}  {value:>9}  {err:>8}"
            if regression:
                line += f"  {row['r2']:>7.4f}" if row.get("r2") is not None else f"  {'':>7}"
            epochs = f"  ({row['epochs']} epochs)" if "epochs" in row else ""
            lines.append(line + "  " + format_params(row["params"]) + epochs)
        if len(self.trials) > top:
            lines.append(f"  ... {len(self.trials) - top} more (--json lists all)")
        if self.best is not None:
            lines += ["", f"best: trial {self.best['number']}, {format_params(self.best['params'])}",
                      f"train it on all training rows: {self.command}"]
        return "\n".join(lines)


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def report(study, request: TuneRequest, registry: Registry, seconds: float = 0.0) -> TuneReport:
    """The study's trials ranked (complete by score, then pruned), the best trial's settings
    and the `nn-cli train` command that trains them."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == state.COMPLETE), key=lambda t: (t.value, t.number))
    pruned = [t for t in trials if t.state == state.PRUNED]
    failed = [t for t in trials if t.state == state.FAIL and not t.user_attrs.get("surplus")]
    rows = [trial_row(t) for t in complete + pruned]
    best_settings = command = None
    if complete:
        best_settings = request.space.settings(request.base, _values(request.space, complete[0]))
        if request.epochs_by_folds:  # the epochs the folds chose, on all training rows
            best_settings = dataclasses.replace(
                best_settings, epochs=complete[0].user_attrs["epoch"], val_fraction=0.0,
                patience=None)
        command = train_command(best_settings, registry)
    task = split_task(request.base, registry)
    scoring = Scoring(request.cv, request.holdout, request.epochs_by_folds, request.why)
    return TuneReport(request.study, request.storage, request.objective, task, rows,
                      {"complete": len(complete), "pruned": len(pruned), "failed": len(failed)},
                      best_settings, command, seconds, scoring.to_dict())


def _values(space: SearchSpace, trial) -> dict[str, Any]:
    """A finished trial's values for every dimension (fixed ones included)."""
    values = {}
    for d in space.dimensions:
        raw = trial.params.get(d.name)
        values[d.name] = d.suggest(_Replay(raw)) if raw is not None else d.suggest(None)
    return values


class _Replay:
    """Stands in for a trial: suggests what a finished trial drew."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def suggest_int(self, *_args, **_kwargs):
        return self.value

    suggest_float = suggest_categorical = suggest_int


def split_task(settings: TrainSettings, registry: Registry) -> str:
    return load_dataset(settings, parse_data(settings.data), registry).task


# The option of `nn-cli train` that sets each field, and how its value is written.
FLAGS = {"optimizer_args": "--opt"}


def train_command(settings: TrainSettings, registry: Registry) -> str:
    """`nn-cli train ...` giving exactly `settings`: every option that differs from what
    `nn-cli train --data ...` alone would take (its defaults, the dataset's own)."""
    plain = resolve(TrainSettings(data=settings.data, target=settings.target, seed=settings.seed),
                    registry, ("data", "target", "seed")).settings
    words = ["nn-cli", "train"]
    mine, theirs = settings.to_dict(), plain.to_dict()
    for name in theirs.keys() - mine.keys():  # at its default here (to_dict leaves it out)
        mine[name] = _default(name)
    for name, plain_value in (("data", TrainSettings().data), ("target", None), ("seed", 0)):
        value = mine.pop(name, None)  # what to train on, always spelled out
        if value is not None and value != plain_value:
            words += ["--" + name, str(value)]
    for name, value in mine.items():
        if name in ("act", "hidden") and settings.layers is not None:
            continue
        if value == theirs.get(name, _default(name)):
            continue
        if value is None:  # patience off: --val-fraction 0 turns the stopping off
            continue
        words.append(FLAGS.get(name, "--" + name.replace("_", "-")))
        words.append(_option_text(value))
    return " ".join(shlex.quote(w) for w in words)


def _default(name: str) -> Any:
    return TrainSettings().to_dict().get(name, getattr(TrainSettings(), name))


def _option_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items())
    return str(value)


def refit(report: TuneReport, registry: Registry, on_epoch=None) -> TrainResult:
    """The best trial's settings trained on all training rows (as its command does)."""
    if report.best_settings is None:
        raise TuneError(f"study {report.study!r} has no complete trial to train")
    return train(report.best_settings, registry, on_epoch, given=EVERY_FIELD)


def check_request(request: TuneRequest, registry: Registry) -> None:
    """Before any trial: every name in the space known, every corner of it valid settings
    the registry can build (optimizer options, stacks, memory)."""
    check_names(request.space, registry)
    corners = [dict((d.name, d.corners()[0]) for d in request.space.dimensions)]
    for d in request.space.dimensions:
        for value in d.corners()[1:]:
            corners.append({**corners[0], d.name: value})
    checked: set[tuple] = set()
    for values in corners:
        settings = request.space.settings(request.base, values)
        key = (settings.optimizer, settings.optimizer_args, settings.layers, settings.loss,
               settings.act, settings.init)
        if key in checked:
            continue
        checked.add(key)
        try:
            check(settings, registry, given=EVERY_FIELD)
        except NNError as e:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise SettingsError(f"search space ({shown}): {e}") from None


def write_plots(study, directory: str | os.PathLike) -> list[Path]:
    """Optuna's optimisation history and parameter importances as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _optuna()  # quiet, and its experimental warnings off
    from optuna.visualization import matplotlib as plots

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("history.png", plots.plot_optimization_history),
                       ("importances.png", plots.plot_param_importances)):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError) as e:  # importances need 2+ complete trials
            warnings.warn(f"{name} not drawn: {_first_line(e)}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        path = out / name
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def default_storage(study: str) -> str:
    """An SQLite file beside the command: ./STUDY.db."""
    return f"sqlite:///{study}.db"
