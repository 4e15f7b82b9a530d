"""Everything a user can do with nn-cli, through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from cli import app

FAST = ["--epochs", "2", "--hidden", "8,8"]


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nn-cli: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    assert "list" in result.stdout and "train" in result.stdout


def test_bare_command_shows_help(run):
    result = run()
    assert result.exit_code == 0 and "train" in result.stdout


def test_list_shows_every_kind_with_plugin(run):
    result = run("list")
    assert result.exit_code == 0
    for kind in ["layer:", "activation:", "loss:", "initializer:", "optimizer:"]:
        assert kind in result.stdout
    assert "tanh" in result.stdout and "[plugins.activations]" in result.stdout


def test_list_one_kind(run):
    result = run("list", "loss")
    assert result.exit_code == 0
    assert "mse" in result.stdout and "bce" in result.stdout and "tanh" not in result.stdout


def test_list_json(run):
    result = run("list", "--json")
    rows = json.loads(result.stdout)
    assert {"kind": "activation", "name": "relu", "plugin": "plugins.activations"}.items() <= next(
        r for r in rows if r["name"] == "relu"
    ).items()
    assert all(r["summary"] for r in rows)


def test_list_unknown_kind(run):
    assert_one_line_error(run("list", "activations"), "unknown kind 'activations'", "'activation'")


def test_train_prints_progress_and_final_errors(run):
    result = run("train", *FAST)
    assert result.exit_code == 0, result.output
    progress = result.stderr.strip().splitlines()  # progress on stderr, results on stdout
    assert progress[0].startswith("training ") and progress[1].startswith("epoch 1/2  loss ")
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("train error ") and "test error" in line


def test_train_json_is_one_object_with_errors_settings_and_losses(run):
    result = run("train", "--act", "relu", "--loss", "bce", "--init", "he", "--lr", "0.05",
                 "--batch-size", "20", "--seed", "3", "--optimizer", "sgd",
                 "--opt", "momentum=0.9,nesterov=true", "--preprocess", "none",
                 "--schedule", "constant", "--json", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout holds the JSON alone
    assert 0 <= data["train_error"] <= 1 and 0 <= data["test_error"] <= 1
    assert len(data["losses"]) == 2 and all(loss > 0 for loss in data["losses"])
    assert data["settings"] == {
        "act": "relu", "loss": "bce", "init": "he", "optimizer": "sgd", "hidden": [8, 8],
        "epochs": 2, "lr": 0.05, "batch_size": 20, "seed": 3, "n_train": 1000,
        "n_test": 1000, "dtype": "float32", "layers": None, "device": "cpu", "preprocess": "none",
        "schedule": "constant", "optimizer_args": {"momentum": 0.9, "nesterov": True},
    }
    assert data["preprocessing"] == {}
    assert "epoch 2/2" in result.stderr  # progress still shown, on stderr


def test_train_twice_gives_identical_json(run):
    first = run("train", "--json", "--seed", "5", *FAST)
    second = run("train", "--json", "--seed", "5", *FAST)
    other = run("train", "--json", "--seed", "6", *FAST)
    assert first.stdout == second.stdout
    assert first.stdout != other.stdout


@pytest.mark.parametrize(
    ("option", "value", "fragments"),
    [
        ("--act", "tnah", ["unknown activation 'tnah'", "did you mean 'tanh'", "nn-cli list activation"]),
        ("--loss", "mes", ["unknown loss 'mes'", "'mse'", "nn-cli list loss"]),
        ("--init", "hee", ["unknown initializer 'hee'", "'he'", "nn-cli list initializer"]),
        ("--optimizer", "adan", ["unknown optimizer 'adan'", "'adam'", "nn-cli list optimizer"]),
        ("--hidden", "25,x", ["hidden", "'25,x'", "25,25,25"]),
        ("--hidden", "25,0", ["hidden", ">= 1"]),
        ("--lr", "-1", ["lr", "-1", "> 0"]),
        ("--lr", "nan", ["lr", "nan", "> 0"]),
        ("--epochs", "0", ["epochs", "0", ">= 1"]),
        ("--epochs", "many", ["--epochs"]),
        ("--batch-size", "0", ["--batch-size", ">= 1"]),
        ("--seed", "-3", ["seed", "-3"]),
        ("--dtype", "float16", ["dtype", "float16", "float32, float64"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, option, value, fragments):
    assert_one_line_error(run("train", option, value), *fragments)


def test_unknown_option_is_one_line_and_exit_2(run):
    assert_one_line_error(run("train", "--bogus"), "--bogus")


# -- --layers describes the network; options it overrides are refused -------------------
STACK = "linear:out=6,relu,linear:out=1"


@pytest.mark.parametrize(("option", "value"), [("--act", "relu"), ("--act", "tanh"), ("--hidden", "8,8")])
def test_options_that_layers_overrides_are_refused(run, option, value):
    result = run("train", "--layers", STACK, option, value, "--epochs", "1")
    assert_one_line_error(result, option, "--layers")


def test_settings_refuse_an_act_or_hidden_beside_layers():
    from core import SettingsError, TrainSettings

    with pytest.raises(SettingsError, match="act"):
        TrainSettings(layers=STACK, act="relu")
    with pytest.raises(SettingsError, match="hidden"):
        TrainSettings(layers=STACK, hidden=(8,))


def test_json_settings_describe_the_stack_that_trained(run):
    data = json.loads(run("train", "--layers", STACK, "--epochs", "1", "--json").stdout)
    settings = data["settings"]
    assert settings["layers"] == STACK
    assert settings["act"] is None and settings["hidden"] is None  # not tanh, [25, 25, 25]


def test_figure_labels_and_titles_describe_the_stack():
    from core import TrainSettings
    from core.pipeline.compare import run_label
    from core.pipeline.figures import describe

    settings = TrainSettings(layers=STACK, loss="mse", epochs=1)
    for text in (run_label(settings), describe([settings])):
        assert STACK in text and "mse" in text, text
        assert "tanh" not in text and "25" not in text, text
    plain = TrainSettings(act="relu")
    assert "relu" in run_label(plain) and "relu" in describe([plain])
    # as the README says of one configuration: the options off their defaults
    assert run_label(TrainSettings()) == "defaults"
    assert run_label(TrainSettings(act="relu", epochs=3)) == "--act relu --epochs 3"


# -- rough edges a newcomer met in the first hour ----------------------------------------


def test_train_says_first_what_it_trains(run):
    result = run("train", "--loss", "mse", *FAST)
    first = result.stderr.splitlines()[0]
    assert first.startswith("training "), first
    for fragment in ("2-8-8-1 net", "tanh", "mse loss", "adam", "lr 0.04", "2 epochs",
                     "1000 training and 1000 test points"):
        assert fragment in first, first
    stack = run("train", "--layers", STACK, "--epochs", "1", "--json")
    assert stack.stderr.startswith(f"training layers {STACK}")  # beside --json: on stderr
    json.loads(stack.stdout)


def test_save_says_what_it_wrote(run, tmp_path):
    model = tmp_path / "m.safetensors"
    result = run("train", *FAST, "--save", str(model))
    assert f"wrote {model}" in result.stderr
    quiet = run("train", *FAST, "--save", str(model), "--json")
    assert f"wrote {model}" in quiet.stderr and json.loads(quiet.stdout)


@pytest.mark.parametrize(("option", "value", "suggestion"),
                         [("--loss", "MSE", "'mse'"), ("--act", "Tanh", "'tanh'"),
                          ("--optimizer", "Adam", "'adam'")])
def test_a_name_in_the_wrong_case_gets_a_suggestion(run, option, value, suggestion):
    assert_one_line_error(run("train", option, value), f"did you mean {suggestion}")


def test_hidden_zero_is_named_as_typed(run):
    result = run("train", "--hidden", "0")
    assert_one_line_error(result, "got 0")
    assert "(0,)" not in result.stderr


def test_help_shows_flags_without_a_value_and_arguments_by_name(run):
    for command in ("train", "compare", "list", "evaluate"):
        text = run(command, "--help").stdout
        for line in text.splitlines():
            if any(flag in line for flag in ("--json ", "--strict-plugins", "--one-at-a-time")):
                assert "<bool>" not in line, line
    usage = run("predict", "--help").stdout
    assert "{model}" not in usage and "MODEL" in usage
