"""A new user's first day with their own data: what the command line says, where it says
it, and what it leaves behind."""

import pytest
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error

FAST = ["--epochs", "2", "--hidden", "4"]


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


@pytest.mark.parametrize("first", ["conv2d:out=4,k=3", "maxpool2d:k=2"])
def test_an_image_layer_on_plain_rows_says_the_data_have_no_images(first):
    result = invoke("train", "--data", "moons", "--layers", f"{first},flatten,linear:out=1")
    assert_one_line_error(result, "takes images, and these data have none",
                          "each row is 2 plain numbers", "such as linear")


def test_early_stopping_says_where_it_stopped_and_which_weights_it_kept():
    result = invoke("train", "--data", "moons", "--val-fraction", "0.2", "--patience", "3",
                    "--epochs", "150", "--hidden", "4")
    assert result.exit_code == 0, result.output
    note = [line for line in result.stdout.splitlines() if line.startswith("stopped early")]
    assert len(note) == 1, result.stdout
    ran = int(note[0].split("after epoch ")[1].split(" ")[0])
    kept = int(note[0].split("weights of epoch ")[1].split(" ")[0])
    assert ran < 150 and ran - kept == 3 and "of 150" in note[0]
    whole = invoke("train", "--data", "moons", "--val-fraction", "0.2", *FAST)
    assert "trained all 2 epochs; kept the weights of epoch" in whole.stdout


def test_progress_goes_to_stderr_and_results_alone_to_stdout():
    """`nn-cli compare ... > t.txt` writes the table, and nothing before it."""
    result = invoke("compare", "--act", "tanh", "--act", "relu", "--runs", "2", *FAST)
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("configuration"), result.stdout
    assert "run 1/4" in result.stderr and "run " not in result.stdout
    trained = invoke("train", *FAST)
    assert trained.stdout.startswith("train error ") and "epoch 1/2" in trained.stderr
    assert trained.stderr.startswith("training ")


def test_the_first_line_names_the_data_once():
    first = invoke("train", "--data", "moons", *FAST).stderr.splitlines()[0]
    assert first.count("moons") == 1, first


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--test-fraction", "1.5", "--test-fraction must be a number"),
    ("--batch-size", "0", "--batch-size must be an integer >= 1"),
    ("--lr", "-1", "--lr must be a finite number"),
    ("--patience", "3", "give --val-fraction too"),
])
def test_errors_name_the_options_the_user_typed(option, value, words):
    assert_one_line_error(invoke("train", "--data", "moons", option, value), words)


@pytest.mark.parametrize("command", ["", "train", "compare", "predict", "evaluate", "list", "info",
                                     "plugins", "serve"])
def test_help_shows_flags_without_a_type_and_sentences_whole(command):
    result = invoke(*filter(None, [command, "--help"]), env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "<bool>" not in result.stdout, result.stdout
    if command == "train":
        assert "and the loss the task's: bce for two classes" in result.stdout
        for figure in ("loss.png", "test_points.png", "misclassified.png", "confusion.png",
                       "predicted.png"):
            assert figure in result.stdout


def test_compare_labels_speak_in_options_as_typed():
    result = invoke("compare", "--data", "moons", "--data", "circles", "--optimizer", "sgd",
                    "--opt", "momentum=0.9", "--opt", "momentum=0.9,nesterov=true", *FAST)
    assert result.exit_code == 0, result.output
    assert "--opt momentum=0.9,nesterov=true --data circles" in result.stdout
    assert "data=" not in result.stdout and "True" not in result.stdout


def test_evaluate_elsewhere_names_the_missing_training_file_not_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flowers.csv").write_text("a,b,kind\n" + "".join(
        f"{i % 5},{i % 3},{'xy'[i % 2]}\n" for i in range(20)))
    assert invoke("train", "--data", "flowers.csv", *FAST, "--save", "m.safetensors").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert_one_line_error(invoke("evaluate", tmp_path / "m.safetensors"),
                          "was trained on the file 'flowers.csv'", "not there from this folder",
                          "--input FILE", "'kind' column")


def test_test_fraction_zero_trains_on_every_row_and_says_nothing_was_tested(tmp_path, registry):
    import json

    from core import TrainSettings
    from core.pipeline.prepare import raw_split

    split = raw_split(TrainSettings(data="moons:n=200", test_fraction=0), registry)
    assert len(split.x_train) == 200 and len(split.x_test) == 0
    model = tmp_path / "m.safetensors"
    result = invoke("train", "--data", "moons:n=200", "--test-fraction", "0", *FAST,
                    "--save", model, "--plot", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert "test: none held out (--test-fraction 0" in result.stdout
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["loss.png"]
    data = json.loads(invoke("train", "--data", "moons:n=200", "--test-fraction", "0", *FAST,
                             "--json").stdout)
    assert data["test_error"] is None and data["metrics"] is None
    runs = json.loads(invoke("train", "--data", "moons:n=200", "--test-fraction", "0", "--runs", "2",
                             *FAST, "--json").stdout)
    assert runs["test_error_mean"] is None and all(r["test_error"] is None for r in runs["runs"])
    table = invoke("compare", "--data", "moons:n=200", "--data", "circles:n=200",
                   "--test-fraction", "0", *FAST).stdout
    assert table.count("none held out") == 2
    assert_one_line_error(invoke("evaluate", model), "--test-fraction 0", "--input FILE")
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y,label\n0.1,0.2,0\n1.5,-0.3,1\n")
    assert json.loads(invoke("evaluate", model, "--input", rows, "--json").stdout)["n"] == 2
