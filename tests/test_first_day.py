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
