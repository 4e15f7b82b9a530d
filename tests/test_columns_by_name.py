"""A file's header says what each column is: `predict` and `evaluate` match the model's
features by name, in any order, and refuse a missing or unknown column in one line; only
a headerless file is read by position, and only with the model's column count."""

import json
import random

import pytest
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error

NAMES = ["width", "height", "kind", "depth"]  # the label in the middle, as users write them


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def rows(n=48):
    """Three features on different scales, each one deciding part of the class."""
    rng = random.Random(5)
    out = []
    for i in range(n):
        w, h, d = rng.uniform(0, 1), rng.uniform(10, 20), rng.uniform(-5, 5)
        kind = "big" if w + (h - 15) / 5 + d / 5 > 0.5 else "small"
        out.append({"width": w, "height": h, "kind": kind, "depth": d})
    return out


def write_csv(path, columns, data, header=True):
    lines = [",".join(columns)] if header else []
    lines += [",".join(str(r[c]) for c in columns) for r in data]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("columns")
    data = write_csv(folder / "train.csv", NAMES, rows())
    path = folder / "m.safetensors"
    result = invoke("train", "--data", data, "--target", "kind", "--epochs", "40", "--hidden", "8",
                    "--save", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_shuffled_columns_give_identical_output(tmp_path, model, command):
    data = rows()
    plain = write_csv(tmp_path / "plain.csv", NAMES, data)
    shuffled = write_csv(tmp_path / "shuffled.csv", ["depth", "kind", "height", "width"], data)
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps([{k: r[k] for k in ["kind", "depth", "width", "height"]} for r in data]))
    outputs = []
    for path in (plain, shuffled, objects):
        result = invoke(command, model, "--input", path, *(["--json"] if command == "evaluate" else []))
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout if command == "predict" else
                       {k: v for k, v in json.loads(result.stdout).items() if k != "source"})
    assert outputs[0] == outputs[1] == outputs[2]
    if command == "evaluate":
        assert outputs[0]["error"] < 0.25  # the columns really were read as trained


def test_a_headerless_file_is_read_by_position_with_the_right_count(tmp_path, model):
    data = rows()
    named = invoke("predict", model, "--input", write_csv(tmp_path / "h.csv", ["width", "height", "depth"], data))
    bare = invoke("predict", model, "--input",
                  write_csv(tmp_path / "b.csv", ["width", "height", "depth"], data, header=False))
    assert named.exit_code == bare.exit_code == 0 and named.stdout == bare.stdout
    labelled = write_csv(tmp_path / "l.csv", ["width", "height", "depth", "kind"], data, header=False)
    assert json.loads(invoke("evaluate", model, "--input", labelled, "--json").stdout)["n"] == len(data)
    short = write_csv(tmp_path / "s.csv", ["width", "height"], data, header=False)
    assert_one_line_error(invoke("predict", model, "--input", short), "has 2 values",
                          "takes 3 features", "width, height, depth")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize(("columns", "fragments"), [
    (["width", "kind", "depth"], ["no column 'height'", "width, height, depth"]),
    (["width", "height", "kind", "depth", "id"], ["unknown column 'id'", "and the label 'kind'"]),
    (["width", "height", "kind", "height"], ["column 'height' appears twice"]),
])
def test_a_missing_unknown_or_repeated_column_is_one_line(tmp_path, model, command, columns, fragments):
    data = [{**r, "id": i} for i, r in enumerate(rows())]
    path = write_csv(tmp_path / "x.csv", columns, data)
    assert_one_line_error(invoke(command, model, "--input", path), str(path), *fragments)


def test_evaluate_without_the_label_column_names_it(tmp_path, model):
    path = write_csv(tmp_path / "x.csv", ["depth", "width", "height"], rows())
    assert_one_line_error(invoke("evaluate", model, "--input", path), "no labels", "'kind'")


def test_a_model_of_a_headerless_file_reads_its_columns_back_by_number(tmp_path):
    data = rows()
    columns = ["kind", "width", "height", "depth"]  # the target first: --target 1
    train_file = write_csv(tmp_path / "t.csv", columns, data, header=False)
    model = tmp_path / "m.safetensors"
    trained = invoke("train", "--data", train_file, "--target", "1", "--epochs", "40", "--hidden", "8",
                     "--save", model)
    assert trained.exit_code == 0, trained.output
    bare = json.loads(invoke("evaluate", model, "--input", train_file, "--json").stdout)
    named = write_csv(tmp_path / "n.csv", ["depth", "kind", "width", "height"], data)
    named.write_text(named.read_text().replace("depth,kind,width,height",
                                               "column 4,column 1,column 2,column 3", 1))
    shuffled = json.loads(invoke("evaluate", model, "--input", named, "--json").stdout)
    assert bare["error"] == shuffled["error"] < 0.25 and bare["n"] == len(data)
