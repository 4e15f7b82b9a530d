"""`nn-cli train --save`, `nn-cli predict` and `nn-cli evaluate`, through CliRunner."""

import json

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error
from core import TrainSettings, disk_dataset, train
from core.data import preprocess
from core.files.atomic import temp_files
from core.files.inference import EVALUATE_STREAM
from core.files.model_file import load_model

FAST = ["--epochs", "2", "--hidden", "8,8", "--seed", "3"]
POINTS = [[0.5, 0.5], [0.0, 0.0], [0.9, 0.1], [0.25, 0.75]]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    result = invoke("train", *FAST, "--save", path)
    assert result.exit_code == 0, result.output
    return path


def expected_rows(model):
    scores, classes = load_model(model).predict(torch.tensor(POINTS))
    return [{"score": s, "class": c} for s, c in zip(scores[:, 0].tolist(), classes[:, 0].tolist())]


def test_train_save_writes_the_trained_network(model):
    result = train(TrainSettings(hidden=(8, 8), epochs=2, seed=3))
    x = torch.tensor(POINTS)
    assert torch.equal(load_model(model).predict(x).scores,
                       result.model.forward(preprocess.apply(result.preprocessing, x)))
    assert temp_files(model) == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("plain.csv", "\n".join(f"{a},{b}" for a, b in POINTS) + "\n"),
        ("header.csv", "x,y\n" + "\n".join(f"{a},{b}" for a, b in POINTS)),
        ("labelled.csv", "x,label,y\n" + "\n".join(f"{a},1,{b}" for a, b in POINTS)),
        ("rows.json", json.dumps(POINTS)),
        ("objects.json", json.dumps([{"x": a, "y": b, "label": 0} for a, b in POINTS])),
    ],
)
def test_predict_reads_csv_and_json_and_writes_scores_and_classes(tmp_path, model, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = invoke("predict", model, "--input", path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "score,class"
    rows = [line.split(",") for line in lines[1:]]
    expected = expected_rows(model)
    assert [float(s) for s, _ in rows] == [r["score"] for r in expected]  # bit for bit
    assert [int(c) for _, c in rows] == [r["class"] for r in expected]


def test_predict_output_file_json_by_extension_or_flag(tmp_path, model):
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(f"{a},{b}" for a, b in POINTS))
    out = tmp_path / "pred.json"
    result = invoke("predict", model, "--input", rows, "--output", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text()) == expected_rows(model)
    assert temp_files(out) == []
    result = invoke("predict", model, "--input", rows, "--format", "json")
    assert json.loads(result.stdout) == expected_rows(model)
    csv_out = tmp_path / "pred.txt"
    invoke("predict", model, "--input", rows, "--output", csv_out)
    assert csv_out.read_text().startswith("score,class\n")


def test_evaluate_on_fresh_points(model):
    result = invoke("evaluate", model, "--seed", "7", "--n", "500", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    x, y = disk_dataset(500, torch.Generator().manual_seed(7 * 16 + EVALUATE_STREAM))
    assert data["error"] == load_model(model).error_rate(x, y) and data["n"] == 500
    text = invoke("evaluate", model, "--seed", "7", "--n", "500")
    assert text.stdout.startswith(f"error {data['error']:.2%} on 500 points")


def test_evaluate_on_a_labelled_file(tmp_path, model):
    expected = expected_rows(model)
    path = tmp_path / "test.csv"
    # The first two rows labelled as predicted, the other two the other way: error 1/2.
    labels = [r["class"] for r in expected[:2]] + [1 - r["class"] for r in expected[2:]]
    path.write_text("\n".join(f"{a},{b},{l}" for (a, b), l in zip(POINTS, labels)))
    result = invoke("evaluate", model, "--input", path, "--json")
    assert json.loads(result.stdout) == {"error": 0.5, "n": 4, "source": str(path)}


@pytest.mark.parametrize(
    ("command", "text", "fragments"),
    [
        ("predict", "0.5,abc\n", ["line 1", "'abc'", "not a number"]),
        ("predict", "x,y\n0.5,0.5\n0.1\n", ["line 3 has 1 values", "line 2 has 2"]),
        # every CSV error counts the file's lines, blank ones and the header included
        ("predict", "x,y\n\n0.5,0.5\n0.2,abc\n", ["line 4, y: 'abc' is not a number"]),
        ("predict", "x,y\n\n0.5,0.5\n\n0.1\n", ["line 5 has 1 values", "line 3 has 2"]),
        ("evaluate", "x,y,label\n0.5,0.5,1\n\n0.2,0.2,3\n", ["line 4 has label 3.0"]),
        ("evaluate", "[[0.5, 0.5, 1], [0.2, 0.2, 3]]", ["line 1 has label 3.0"]),  # JSON: the line the row starts on
        ("predict", "0.5,0.5,0.5\n", ["line 1 has 3 values", "takes 2 features"]),
        ("predict", "", ["no rows"]),
        ("predict", "[1, 2", ["not valid JSON"]),
        ("predict", "0.5,nan\n", ["'nan'", "not a finite number"]),
        ("evaluate", "x,y\n0.5,0.5\n", ["no labels", "'label'"]),
        ("evaluate", "0.5,0.5,2\n", ["line 1 has label 2.0", "0 or 1"]),
        ("evaluate", "x,z,y,label\n0.5,0.5,0.5,1\n", ["unknown column 'z'", "x, y"]),
    ],
)
def test_bad_input_file_is_one_line_and_exit_2(tmp_path, model, command, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert_one_line_error(invoke(command, model, "--input", path), str(path), *fragments)


def test_bad_predict_options(tmp_path, model):
    rows = tmp_path / "rows.csv"
    rows.write_text("0.5,0.5\n")
    assert_one_line_error(invoke("predict", model, "--input", rows, "--format", "xml"),
                          "'xml'", "csv, json")
    assert_one_line_error(invoke("predict", model, "--input", rows, "--output", tmp_path / "no" / "p.csv"),
                          "does not exist")
    assert_one_line_error(invoke("predict", model, "--input", tmp_path / "missing.csv"),
                          "cannot read", "missing.csv")
    assert_one_line_error(invoke("evaluate", model, "--n", "0"), "n must be", ">= 1")


def test_train_save_to_a_missing_directory_fails_before_training(tmp_path):
    result = invoke("train", *FAST, "--save", tmp_path / "no" / "m.safetensors")
    assert_one_line_error(result, "does not exist")
