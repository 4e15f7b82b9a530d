"""`nn-cli evaluate` on a held-out file reports what `nn-cli train` reports for its test
split: error and per-class table with confusion (classification), RMSE, MAE and R^2
(regression); class names as in the file; --target names the file's label column."""

import json

import pytest
from typer.testing import CliRunner

from cli import app
from core import TrainSettings, default_registry
from core.pipeline.prepare import raw_split


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def json_of(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_test_split(path, settings, label, names=None):
    """The run's own test rows as a CSV file, the label column called `label` (class names
    in it when `names` is given), placed first, the features under their own names."""
    split = raw_split(settings, default_registry())
    x, y = split.x_test, split.y_test
    lines = [",".join([label] + list(split.dataset.feature_names))]  # read by name
    for row, value in zip(x.tolist(), y.reshape(len(x), -1).tolist()):
        shown = names[int(value[0])] if names else repr(value[0])
        lines.append(",".join([shown] + [repr(v) for v in row]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_classification_held_out_file_reports_trains_test_metrics(tmp_path):
    model = tmp_path / "iris.safetensors"
    trained = json_of("train", "--data", "iris", "--epochs", "30", "--save", model)
    names = trained["dataset"]["class_names"]
    held_out = write_test_split(tmp_path / "held_out.csv", TrainSettings(data="iris"), "species", names)
    evaluated = json_of("evaluate", model, "--input", held_out, "--target", "species")
    assert evaluated["metrics"] == trained["metrics"]  # the same figures, the same class names
    assert evaluated["error"] == trained["test_error"] and evaluated["task"] == "multiclass"
    assert [c["class"] for c in evaluated["metrics"]["classes"]] == ["setosa", "versicolor", "virginica"]
    text = invoke("evaluate", model, "--input", held_out, "--target", "species").stdout
    assert text.startswith(f"error {trained['test_error']:.2%} on 38 points ({held_out})")
    assert "precision  recall     f1  support" in text and "confusion matrix" in text
    assert "versicolor" in text


def test_regression_held_out_file_reports_rmse_mae_and_r2(tmp_path):
    model = tmp_path / "diabetes.safetensors"
    trained = json_of("train", "--data", "diabetes", "--epochs", "20", "--save", model)
    held_out = write_test_split(tmp_path / "held_out.csv", TrainSettings(data="diabetes"), "progression")
    evaluated = json_of("evaluate", model, "--input", held_out, "--target", "progression")
    assert evaluated["task"] == "regression" and evaluated["measure"] == "rmse"
    for key in ("rmse", "mae", "r2"):
        assert evaluated["metrics"][key] == pytest.approx(trained["metrics"][key], rel=1e-6)
    assert evaluated["error"] == pytest.approx(trained["test_error"], rel=1e-6)
    text = invoke("evaluate", model, "--input", held_out, "--target", "progression").stdout
    assert "MAE" in text and "R^2" in text and text.startswith("RMSE ")


def test_evaluate_without_target_fails_in_one_line(tmp_path):
    """Without --target the file has no 'label' column: species reads as a feature."""
    model = tmp_path / "iris.safetensors"
    json_of("train", "--data", "iris", "--epochs", "5", "--save", model)
    held_out = write_test_split(tmp_path / "held_out.csv", TrainSettings(data="iris"), "species",
                                ["setosa", "versicolor", "virginica"])
    result = invoke("evaluate", model, "--input", held_out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "species" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_disks_evaluation_reads_as_before(tmp_path):
    model = tmp_path / "disk.safetensors"
    assert invoke("train", "--epochs", "2", "--save", model).exit_code == 0
    assert set(json_of("evaluate", model, "--n", "50")) == {"error", "n", "source"}


def test_a_held_out_file_of_three_numbered_classes_is_read_by_its_numbers(tmp_path):
    """A table whose labels are 0, 1, 2: the model's classes are named by those numbers."""
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 3}" for i in range(30)]
    train_csv, held_out = tmp_path / "train.csv", tmp_path / "held_out.csv"
    train_csv.write_text("\n".join(rows) + "\n")
    held_out.write_text("\n".join(rows[:1] + rows[1:10]) + "\n")
    model = tmp_path / "m.safetensors"
    json_of("train", "--data", train_csv, "--epochs", "3", "--save", model)
    evaluated = json_of("evaluate", model, "--input", held_out)
    assert evaluated["n"] == 9 and [c["class"] for c in evaluated["metrics"]["classes"]] == ["0", "1", "2"]
