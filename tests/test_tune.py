"""`nn-cli tune` on Optuna: the search space parsed once and refused before any trial when
bad, trials scored on held-out rows and pruned, the study in SQLite resumed after a real
SIGKILL, local workers sharing it, the report and the command that reproduces the best."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from postgres_server import postgres_url  # noqa: F401  (the fixture: a throwaway server)
from core import TrainSettings, default_registry
from core.pipeline.search_space import SearchSpaceError, parse_space
from core.pipeline.tune import CV_BELOW_ROWS, at_best_mean_epoch, choose_scoring, make_folds

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--data", "iris", "--param", "epochs=8", "--param", "lr=0.005..0.1:log",
        "--param", "hidden=4..16"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def tune_json(tmp_path, *args):
    result = invoke("tune", *args, "--storage", f"sqlite:///{tmp_path}/s.db", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def trials_in(storage: str, study: str):
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def finished(trials):
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


# -- the search space ---------------------------------------------------------------------

def test_space_text_reads_ranges_logs_integers_and_choices():
    space = parse_space(["lr=1e-4..0.1:log", "hidden=8..128:log", "act=tanh|relu",
                         "batch-size=16|32", "epochs=200", "opt.weight_decay=0..0.1"])
    d = {x.name: x for x in space.dimensions}
    stacks = parse_space(["layers=linear:out=8,relu,linear:out=3|linear:out=3"]).dimensions[0]
    assert (d["lr"].low, d["lr"].high, d["lr"].log, d["lr"].integer) == (1e-4, 0.1, True, False)
    assert (d["hidden"].low, d["hidden"].high, d["hidden"].integer) == (8, 128, True)
    assert d["act"].choices == ("tanh", "relu") and d["batch_size"].choices == ("16", "32")
    assert not d["epochs"].searched and d["epochs"].corners() == [200]
    assert d["opt.weight_decay"].integer is False
    assert stacks.choices == ("linear:out=8,relu,linear:out=3", "linear:out=3")
    with pytest.raises(SearchSpaceError, match="layers is the whole network"):
        parse_space(["layers=linear:out=3", "act=tanh|relu"])


def test_values_go_into_settings_depth_times_width_and_optimizer_options():
    space = parse_space(["hidden=8..64", "depth=1..3", "opt.weight_decay=0..0.1"])
    base = TrainSettings(data="iris", optimizer="adamw")
    s = space.settings(base, {"hidden": 12, "depth": 2, "opt.weight_decay": 0.05})
    assert s.hidden == (12, 12) and dict(s.optimizer_args) == {"weight_decay": 0.05}
    assert space.settings(base, {"hidden": 12}).hidden == (12, 12, 12)  # base's depth


@pytest.mark.parametrize(("params", "fragments"), [
    (["lr=0.1..0.01"], ["lr=0.1..0.01", "empty range"]),
    (["lr=0.1..0.1"], ["empty range"]),
    (["lr=0..0.1:log"], ["log range needs LOW > 0"]),
    (["hidden=4.5..16"], ["hidden", "not an integer"]),
    (["lrate=1..2"], ["unknown option 'lrate'", "accepted:", "lr"]),
    (["seed=1..5"], ["seed is not searched", "--seed"]),
    (["act=tanh|rleu"], ["act=tanh|rleu", "unknown activation 'rleu'", "relu"]),
    (["layers=linear:out=8,tnah,linear:out=3|linear:out=3", "lr=0.01..0.1"], ["unknown", "tnah"]),
    (["optimizer=sgd|adma"], ["unknown optimizer 'adma'"]),
    (["opt.momentm=0..0.9"], ["momentm"]),
    (["lr=1e-3..0.1", "lr=0.01"], ["lr is given twice"]),
    (["epochs=20"], ["nothing to search"]),
    (["schedule=cosine|linear"], ["linear", "cosine, constant"]),
    (["epochs=0..10"], ["epochs must be an integer >= 1"]),
])
def test_a_bad_space_is_one_line_and_exit_2_before_any_trial(tmp_path, params, fragments):
    args = ["tune", "--data", "iris", "--storage", f"sqlite:///{tmp_path}/s.db"]
    for p in params:
        args += ["--param", p]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nn-cli: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "s.db").exists()  # no study was even made


def test_the_loss_cannot_be_searched_under_the_loss_objective(tmp_path):
    result = invoke("tune", "--data", "iris", "--param", "loss=cross_entropy|mse",
                    "--storage", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == 2 and "--objective error" in result.stderr


# -- the folds ----------------------------------------------------------------------------

@pytest.mark.parametrize("cv", [None, 4])
def test_folds_hold_out_disjoint_rows_of_the_training_rows_only(cv):
    registry = default_registry()
    settings = TrainSettings(data="moons")  # real-valued points: no two rows alike
    folds = make_folds(settings, registry, cv, 0.2)
    assert len(folds) == (cv or 1)
    from core.pipeline.prepare import raw_split

    split = raw_split(settings, registry)
    rows = {tuple(r) for r in split.x_train.tolist()}
    test = {tuple(r) for r in split.x_test.tolist()}
    held = [{tuple(r) for r in f.x_test.tolist()} for f in folds]
    for fold, h in zip(folds, held):
        assert h <= rows and not (h & test)  # never the run's test split
        assert not ({tuple(r) for r in fold.x_train.tolist()} & h)
        assert len(fold.x_train) + len(h) == len(rows)
        share = fold.y_test.double().mean() - torch.cat([fold.y_train, fold.y_test]).double().mean()
        assert abs(share) < 0.02  # stratified: each class held out in its share
    if cv:
        assert set().union(*held) == rows and sum(map(len, held)) == len(rows)


# -- scoring: k folds for a small table, unless told ----------------------------------------

def test_a_small_table_is_scored_by_five_folds_that_pick_the_epochs(tmp_path):
    report = tune_json(tmp_path, "--data", "iris", "--param", "lr=0.005..0.1:log",
                       "--param", "epochs=40", "--trials", "3", "--no-prune", "--study", "small")
    scoring, best = report["scoring"], report["best"]
    assert scoring["cv"] == 5 and scoring["holdout"] is None and scoring["epochs_by_folds"]
    assert "112 training rows, fewer than 1000" in scoring["why"]
    # the refit: the epochs the folds chose, on every training row (no validation share)
    assert 1 <= best["epochs"] <= 40 and best["settings"]["epochs"] == best["epochs"]
    assert "val_fraction" not in best["settings"] and "patience" not in best["settings"]
    assert f"--epochs {best['epochs']}" in report["command"]
    assert "--val-fraction 0" in report["command"]
    text = invoke("tune", "--data", "iris", "--param", "lr=0.005..0.1:log", "--param",
                  "epochs=40", "--trials", "3", "--study", "small",
                  "--storage", f"sqlite:///{tmp_path}/s.db").stdout
    assert "scored by 5-fold cross-validation: 112 training rows" in text


@pytest.mark.parametrize(("choice", "cv", "holdout"), [
    (["--holdout", "0.3"], None, 0.3), (["--cv", "3"], 3, None)])
def test_an_explicit_cv_or_holdout_wins(tmp_path, choice, cv, holdout):
    report = tune_json(tmp_path, *FAST, "--trials", "2", "--no-prune", *choice)
    assert (report["scoring"]["cv"], report["scoring"]["holdout"]) == (cv, holdout)
    assert "as asked" in report["scoring"]["why"]
    assert report["scoring"]["epochs_by_folds"] is (cv is not None)
    study = optuna.load_study(study_name="tune-iris", storage=f"sqlite:///{tmp_path}/s.db")
    assert (study.user_attrs["nn_tune"]["cv"], study.user_attrs["nn_tune"]["holdout"]) == (cv, holdout)


def test_cv_and_holdout_together_are_refused(tmp_path):
    result = invoke("tune", *FAST, "--cv", "3", "--holdout", "0.2",
                    "--storage", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == 2 and "not both" in result.stderr
    assert not (tmp_path / "s.db").exists()


def test_the_rows_decide_folds_or_a_holdout_and_a_searched_validation_share_keeps_its_stopping():
    registry = default_registry()
    iris = TrainSettings(data="iris", val_fraction=0.15, patience=30)
    moons, disk = TrainSettings(data="moons"), TrainSettings(data="disk")  # 750, 1000 rows
    assert choose_scoring(moons, parse_space(["lr=0.01..0.1"]), registry).cv == 5
    assert not choose_scoring(moons, parse_space(["lr=0.01..0.1"]), registry).epochs_by_folds
    wide = choose_scoring(disk, parse_space(["lr=0.01..0.1"]), registry)
    assert (wide.cv, wide.holdout) == (None, 0.2) and "1000 training rows" in wide.why
    assert CV_BELOW_ROWS == 1000
    kept = choose_scoring(iris, parse_space(["lr=0.01..0.1", "val-fraction=0.1|0.2"]), registry)
    assert kept.cv == 5 and not kept.epochs_by_folds  # the validation share was asked for


def test_the_epoch_is_the_lowest_mean_over_the_folds_a_stopped_fold_at_its_last():
    folds = [{"loss": [3.0, 1.0, 2.0], "error": [0.3, 0.1, 0.2]},
             {"loss": [3.0, 2.0, 1.5, 0.5, 0.9], "error": [0.5, 0.4, 0.3, 0.2, 0.25]}]
    epoch, at = at_best_mean_epoch(folds)  # means 3, 1.5, 1.75, 1.25 (2.0 + 0.5), 1.45
    assert epoch == 4 and at == [{"loss": 2.0, "error": 0.2}, {"loss": 0.5, "error": 0.2}]


# -- a whole tune -------------------------------------------------------------------------

def test_tune_ranks_trials_and_prints_the_command_that_trains_the_best(tmp_path):
    report = tune_json(tmp_path, *FAST, "--trials", "6", "--study", "t")
    assert report["counts"]["complete"] + report["counts"]["pruned"] == 6
    complete = [t for t in report["trials"] if t["state"] == "complete"]
    assert [t["value"] for t in complete] == sorted(t["value"] for t in complete)
    best = report["best"]
    assert best["number"] == complete[0]["number"] and 0 <= best["error"] <= 1
    assert set(best["params"]) == {"lr", "hidden"}
    words = shlex.split(report["command"])
    assert words[:4] == ["nn-cli", "train", "--data", "iris"]
    trained = invoke(*words[1:], "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["settings"] == best["settings"]
    assert best["settings"]["hidden"] == [best["params"]["hidden"]] * len(best["settings"]["hidden"])


def test_cross_validation_scores_the_mean_of_the_folds(tmp_path):
    report = tune_json(tmp_path, *FAST, "--trials", "3", "--cv", "3", "--no-prune", "--study", "cv")
    assert report["counts"] == {"complete": 3, "pruned": 0, "failed": 0}
    assert all(t["value"] == pytest.approx(t["loss"]) for t in report["trials"])


def test_regression_reports_rmse_and_r2_by_the_error_objective(tmp_path):
    report = tune_json(tmp_path, "--data", "diabetes", "--param", "epochs=10",
                       "--param", "l2=1e-4..0.1:log", "--objective", "error", "--trials", "3",
                       "--study", "reg")
    best = report["best"]
    assert report["task"] == "regression" and best["value"] == best["error"] and "r2" in best
    text = invoke("tune", "--data", "diabetes", "--param", "epochs=10", "--param",
                  "l2=1e-4..0.1:log", "--objective", "error", "--trials", "3", "--study", "reg",
                  "--storage", f"sqlite:///{tmp_path}/s.db").stdout
    assert "RMSE" in text and "R^2" in text and "--l2" in text


def test_pruning_stops_trials_that_lag(tmp_path):
    report = tune_json(tmp_path, "--data", "iris", "--param", "epochs=30",
                       "--param", "lr=1e-5..0.3:log", "--trials", "14", "--study", "p")
    assert report["counts"]["pruned"] >= 1
    pruned = [t for t in report["trials"] if t["state"] == "pruned"]
    assert all(1 <= t["pruned_at_epoch"] < 30 for t in pruned)


def test_save_refits_the_best_on_all_training_rows_and_plot_draws_optunas_figures(tmp_path):
    model, figures = tmp_path / "best.safetensors", tmp_path / "figures"
    report = tune_json(tmp_path, *FAST, "--trials", "4", "--no-prune", "--study", "s",
                       "--save", model, "--plot", figures)
    assert model.is_file() and (figures / "history.png").is_file()
    assert (figures / "importances.png").is_file()
    from core.files.model_file import load_model

    loaded = load_model(model)
    assert loaded.settings.to_dict() == report["best"]["settings"]


def test_going_on_with_other_options_is_refused(tmp_path):
    tune_json(tmp_path, *FAST, "--trials", "2", "--study", "same")
    result = invoke("tune", *FAST[:-2], "--param", "hidden=4..32", "--trials", "2",
                    "--study", "same", "--storage", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == 2 and "started with other options (space differ)" in result.stderr


def test_a_finished_study_runs_no_more_trials(tmp_path):
    tune_json(tmp_path, *FAST, "--trials", "3", "--study", "done")
    again = tune_json(tmp_path, *FAST, "--trials", "3", "--study", "done")
    assert len(trials_in(f"sqlite:///{tmp_path}/s.db", "done")) == 3
    assert again["counts"]["complete"] + again["counts"]["pruned"] == 3


# -- processes ----------------------------------------------------------------------------

def nn_cli(*args, cwd):
    return [sys.executable, str(ROOT / "cli.py"), *map(str, args)]


SLOW = ["tune", "--data", "iris", "--param", "epochs=150", "--param", "batch-size=8",
        "--param", "val-fraction=0",  # no early stopping: every trial its epochs
        "--param", "lr=0.005..0.1:log", "--param", "hidden=4..16", "--no-prune",
        "--holdout", "0.2"]  # one training a trial (iris alone would take 5 folds)


def test_a_killed_tune_resumes_and_finishes_the_same_number_of_trials(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    slower = [w.replace("epochs=150", "epochs=600") for w in SLOW]  # ~1 s a trial
    command = nn_cli(*slower, "--trials", "5", "--study", "k", "--storage", storage, cwd=tmp_path)
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # kill it in its third trial
        time.sleep(0.1)
        if (tmp_path / "s.db").exists():
            try:
                trials = trials_in(storage, "k")
            except Exception:  # the study is being made
                continue
            # (a running trial with both its options drawn: killed before it draws them,
            # its retry would draw the rest afresh and no longer match it)
            if len(finished(trials)) >= 2 and any(t.state.name == "RUNNING" and len(t.params) == 2
                                                  for t in trials):
                break
    else:
        proc.kill()
        pytest.fail(f"the tune never got to its third trial: {proc.stderr.read().decode()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = trials_in(storage, "k")
    killed = [t for t in before if t.state.name == "RUNNING"]
    assert len(killed) == 1
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert resumed.returncode == 0, resumed.stderr
    after = trials_in(storage, "k")
    assert len(finished(after)) == 5  # exactly the number asked for
    assert after[killed[0].number].state.name == "FAIL"  # the killed one, failed once stale ...
    retried = [t for t in finished(after) if t.number > killed[0].number
               and t.params == killed[0].params]
    assert retried  # ... and run again with its own options
    assert "best: trial" in resumed.stdout


def test_two_local_workers_share_one_study_and_run_no_trial_twice(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    slower = [w.replace("epochs=150", "epochs=800") for w in SLOW]  # ~1.5 s a trial: past
    # the second process's start-up (torch's import), so both train
    result = subprocess.run(nn_cli(*slower, "--trials", "6", "--study", "w", "--storage", storage,
                                   "--workers", "2", "--json", cwd=tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    trials = trials_in(storage, "w")
    done = finished(trials)
    assert len(done) == 6
    assert len({t.number for t in done}) == 6
    processes = {t.user_attrs["process"] for t in done}
    assert len(processes) == 2  # both processes trained trials of the one study
    report = json.loads(result.stdout)
    assert report["counts"]["complete"] == 6


# -- PostgreSQL: one study shared by processes that could be on several machines ----------


def test_two_tunes_share_one_study_on_postgresql(tmp_path, postgres_url):
    slower = [w.replace("epochs=150", "epochs=600") for w in SLOW]
    command = nn_cli(*slower, "--trials", "6", "--study", "shared", "--storage", postgres_url,
                     cwd=tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # two separate commands, as on two machines naming the same server
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    trials = trials_in(postgres_url, "shared")
    done = finished(trials)
    assert len(done) == 6 and len({t.number for t in done}) == 6
    assert len({t.user_attrs["process"] for t in done}) == 2  # both commands trained
    assert not (tmp_path / "tune-iris.db").exists()  # nothing went to a local SQLite file
