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
