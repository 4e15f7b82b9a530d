"""nn-cli train --runs / --plot and nn-cli compare, through typer's CliRunner."""

import csv
import json

import pytest
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error
from core import TrainSettings
from core.pipeline.compare import configurations, label

FAST = ["--epochs", "2", "--hidden", "6"]


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def test_runs_json_holds_each_run_and_the_statistics(run):
    result = run("train", "--runs", "3", "--seed", "4", "--json", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["seed"] for r in data["runs"]] == [4, 5, 6]
    for key in ["test_error_mean", "test_error_std", "train_error_mean", "train_error_std",
                "loss_mean", "loss_std", "final_loss_mean", "final_loss_std"]:
        assert key in data
    assert len(data["loss_mean"]) == 2 and data["std"] == "sample (n - 1)"
    assert "run 3/3  seed 6" in result.stderr  # progress on stderr, one line per run


def test_run_i_equals_the_single_run_with_seed_plus_i(run):
    # float64: the batched ensemble and the single run then agree to ~1e-15 (see test_ensemble)
    f64 = ["--dtype", "float64", *FAST]
    many = json.loads(run("train", "--runs", "2", "--seed", "4", "--json", *f64).stdout)
    alone = json.loads(run("train", "--seed", "5", "--json", *f64).stdout)
    second = many["runs"][1]
    assert second["seed"] == 5
    assert (second["train_error"], second["test_error"]) == (alone["train_error"], alone["test_error"])
    assert second["losses"] == pytest.approx(alone["losses"], rel=1e-11)


def test_one_at_a_time_runs_equal_their_single_runs_bit_for_bit(run):
    """float32, the default: the batched ensemble would agree only to rounding here."""
    many = json.loads(run("train", "--runs", "3", "--seed", "4", "--one-at-a-time", "--json",
                          *FAST).stdout)
    for r in many["runs"]:
        alone = json.loads(run("train", "--seed", str(r["seed"]), "--json", *FAST).stdout)
        assert (r["train_error"], r["test_error"], r["losses"]) == (
            alone["train_error"], alone["test_error"], alone["losses"])


def test_compare_one_at_a_time_gives_the_same_runs_as_train_one_at_a_time(run):
    table = json.loads(run("compare", "--act", "tanh", "--act", "relu", "--runs", "2",
                           "--one-at-a-time", "--json", *FAST).stdout)
    relu = json.loads(run("train", "--act", "relu", "--runs", "2", "--one-at-a-time", "--json",
                          *FAST).stdout)
    assert table["configurations"][1]["runs"] == relu["runs"]


def test_runs_json_is_identical_twice(run):
    first = run("train", "--runs", "2", "--json", *FAST)
    assert first.stdout == run("train", "--runs", "2", "--json", *FAST).stdout


def test_runs_text_prints_a_line_per_run_and_mean_and_std(run):
    result = run("train", "--runs", "2", *FAST)
    progress, lines = result.stderr.strip().splitlines(), result.stdout.strip().splitlines()
    assert progress[0].startswith("training ") and progress[0].endswith("2 runs, seeds 0-1")
    assert progress[1].startswith("run 1/2  seed 0  train error")
    assert len(lines) == 1 and lines[-1].startswith("2 runs (seeds 0-1, trained together as one batched ensemble), "
                                "mean ± std:") and "test error" in lines[-1]
    alone = run("train", "--runs", "2", "--one-at-a-time", *FAST).stdout.strip().splitlines()
    assert alone[-1].startswith("2 runs (seeds 0-1, one at a time), mean ± std:")


def test_runs_json_says_whether_the_runs_trained_together(run):
    together = json.loads(run("train", "--runs", "2", "--json", *FAST).stdout)
    alone = json.loads(run("train", "--runs", "2", "--one-at-a-time", "--json", *FAST).stdout)
    assert together["together"] is True and alone["together"] is False


def test_the_runs_bar_gives_way_to_the_epochs_bar_when_the_runs_train_together():
    import io

    from rich.console import Console
    from rich.progress import Progress

    from core.pipeline.progress import RunProgress

    with Progress(console=Console(file=io.StringIO())) as bars:
        progress = RunProgress(3, 5, None, bars)
        progress.on_epoch(None, 2, 0.5)  # all three runs finished epoch 2
        runs_bar, epochs_bar = bars.tasks
        assert not runs_bar.visible and epochs_bar.completed == 2
        assert "together" in epochs_bar.fields["what"]


def test_train_plot_writes_both_figures(run, tmp_path):
    result = run("train", "--runs", "2", "--plot", str(tmp_path / "figs"), "--json", *FAST)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # the "wrote ..." lines went to stderr
    for name in ["loss.png", "test_points.png"]:
        assert (tmp_path / "figs" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"wrote {tmp_path / 'figs' / name}" in result.stderr


def test_compare_runs_the_cartesian_product(run, tmp_path):
    out = tmp_path / "table.csv"
    result = run("compare", "--act", "tanh", "--act", "relu", "--loss", "mse", "--loss", "bce",
                 "--runs", "2", "--csv", str(out), "--json", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["varied"] == ["act", "loss"]
    labels = [c["label"] for c in data["configurations"]]
    assert labels == ["--act tanh --loss mse", "--act tanh --loss bce", "--act relu --loss mse",
                      "--act relu --loss bce"]
    assert all(len(c["runs"]) == 2 and c["settings"]["epochs"] == 2 for c in data["configurations"])
    rows = list(csv.DictReader(out.open()))
    assert [r["label"] for r in rows] == labels
    for row, config in zip(rows, data["configurations"]):
        assert float(row["test_error_mean"]) == config["test_error_mean"]
        assert float(row["final_loss_std"]) == config["final_loss_std"]
        assert row["runs"] == "2" and row["act"] == config["settings"]["act"]


def test_compare_configuration_equals_train_runs(run):
    compared = json.loads(run("compare", "--act", "tanh", "--act", "relu", "--runs", "2",
                              "--json", *FAST).stdout)
    trained = json.loads(run("train", "--act", "relu", "--runs", "2", "--json", *FAST).stdout)
    relu = compared["configurations"][1]
    assert relu["runs"] == trained["runs"] and relu["settings"] == trained["settings"]


def test_compare_prints_a_table_of_mean_and_std(run):
    result = run("compare", "--lr", "0.01", "--lr", "0.02", "--runs", "2", *FAST)
    assert result.exit_code == 0, result.output
    table = result.stdout.strip().splitlines()[-3:]
    assert table[0].split() == ["configuration", "runs", "train", "error", "test", "error",
                                "final", "loss"]
    assert table[1].startswith("--lr 0.01") and table[2].startswith("--lr 0.02")
    assert table[1].count("±") == 3


def test_compare_varies_optimizer_options_and_writes_plots(run, tmp_path):
    result = run("compare", "--optimizer", "sgd", "--opt", "", "--opt", "momentum=0.9",
                 "--plot", str(tmp_path), *FAST)
    assert result.exit_code == 0, result.output
    assert "--opt '' " in result.stdout and "--opt momentum=0.9 " in result.stdout  # the user's flags
    assert "optimizer_args" not in result.stdout
    assert (tmp_path / "loss.png").exists() and (tmp_path / "test_points.png").exists()


def test_configurations_and_labels():
    configs = configurations(TrainSettings(), {"act": ["tanh", "relu"], "hidden": [(3,), (4, 4)]})
    assert [(c.act, c.hidden) for c in configs] == [
        ("tanh", (3,)), ("tanh", (4, 4)), ("relu", (3,)), ("relu", (4, 4))]
    assert label(configs[1], ["act", "hidden"]) == "--act tanh --hidden 4,4"


def test_a_single_configuration_is_labelled_by_what_it_changes(run):
    # one non-default setting is not "defaults": the label says what the user gave
    data = json.loads(run("compare", "--lr", "0.02", "--json", *FAST).stdout)
    assert [c["label"] for c in data["configurations"]] == ["--hidden 6 --epochs 2 --lr 0.02"]
    assert label(TrainSettings(), []) == "defaults"
    assert label(TrainSettings(optimizer_args={"momentum": 0.9}, optimizer="sgd"), []) == (
        "--optimizer sgd --opt momentum=0.9")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "--runs", "0"], ["runs", ">= 1"]),
        (["train", "--opt", "momentum"], ["KEY=VALUE", "'momentum'"]),
        (["train", "--opt", "momentum=0.9"], ["'adam' has no option 'momentum'", "beta1"]),
        (["train", "--preprocess", "pca"], ["preprocess", "'pca'", "standardize, none"]),
        (["train", "--schedule", "step"], ["schedule", "'step'", "cosine, constant"]),
        (["train", "--plot", "cli.py/figs"], ["--plot", "is a file"]),
        (["train", "--runs", "2", "--save", "m.safetensors"], ["--runs 2", "--save", "one run"]),
        (["train", "--resume", "x.safetensors", "--opt", "momentum=0.9"], ["--resume", "--opt"]),
        (["compare", "--act", "tanh", "--act", "tnah"], ["unknown activation 'tnah'"]),
        (["compare", "--csv", "no/such/folder/t.csv"], ["'no/such/folder/t.csv'", "does not exist"]),
        (["compare", "--runs", "0"], ["runs", ">= 1"]),
        (["compare", "--lr", "0"], ["lr", "> 0"]),
        (["compare", "--optimizer", "adam", "--optimizer", "sgd", "--opt", "beta1=0.8"],
         ["'sgd' has no option 'beta1'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, args, fragments):
    assert_one_line_error(run(*args), *fragments)


def test_compare_checks_every_configuration_before_training(run):
    # the bad value is the second configuration's; no run of the first may start
    result = run("compare", "--act", "tanh", "--act", "tnah", "--runs", "2", *FAST)
    assert "run 1/" not in result.output


def test_compare_checks_every_layers_stack_before_training_any(run):
    result = run("compare", "--layers", "linear:out=4,tanh,linear:out=1",
                 "--layers", "linear:out=2", "--epochs", "1")
    assert_one_line_error(result, "one output feature")
    assert "run 1/" not in result.output  # nothing trained before the error
