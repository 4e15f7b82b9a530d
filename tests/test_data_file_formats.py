"""Files as users have them: compressed, separated by semicolons, tabs or blanks, with lines
before the table, read as the plain CSV is, by pandas and by numpy alike."""

import bz2
import gzip
import lzma

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core.data.dataset import build_dataset
from test_cli import assert_one_line_error

ROWS = [(1.5, 2.0, "rose"), (3.0, 0.5, "tulip"), (2.0, 3.5, "lily"), (1.0, 2.5, "rose"),
        (3.5, 1.0, "tulip"), (2.5, 3.0, "lily"), (1.25, 2.25, "rose"), (3.25, 0.75, "tulip")]


def table(separator: str, header: str = "size,weight,species") -> str:
    lines = [header.replace(",", separator)] if header else []
    lines += [separator.join(map(str, row)) for row in ROWS]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["pandas", "numpy"])
def reader(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr("core.data.reading._pandas", lambda: None)
    return request.param


def load(registry, text: str):
    return build_dataset(registry, text, generator=torch.Generator())


def same(a, b) -> bool:
    return (torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
            and a.feature_names == b.feature_names and a.class_names == b.class_names)


@pytest.fixture
def plain(registry, tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text(table(","))
    return load(registry, str(path))


@pytest.mark.parametrize(("suffix", "opener"), [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compressed_files_read_as_the_plain_one(registry, tmp_path, reader, plain, suffix, opener):
    path = tmp_path / f"packed.csv{suffix}"
    with opener(path, "wt") as f:
        f.write(table(","))
    assert same(load(registry, str(path)), plain)


@pytest.mark.parametrize(("name", "separator"), [("semi.csv", ";"), ("tabs.csv", "\t"),
                                                 ("blanks.txt", " "), ("aligned.txt", "   ")])
def test_the_separator_is_detected(registry, tmp_path, reader, plain, name, separator):
    path = tmp_path / name
    path.write_text(table(separator))
    assert same(load(registry, str(path)), plain)


def test_sep_names_the_separator_and_a_bad_one_is_one_line(registry, tmp_path, reader, plain):
    path = tmp_path / "semi.csv"
    path.write_text(table(";"))
    assert same(load(registry, f"file:path={path},sep=semicolon"), plain)
    assert same(load(registry, f"file:path={path},sep=;"), plain)
    one_column = invoke("train", "--data", f"file:path={path},sep=tab")
    assert_one_line_error(one_column, "found one column", "sep=semicolon")
    assert_one_line_error(invoke("train", "--data", f"file:path={path},sep=xy"), "sep must be one character")


def test_skip_passes_over_lines_before_the_table(registry, tmp_path, reader):
    """scikit-learn's own CSVs start with a line of counts: n, features, class names."""
    counts = tmp_path / "sk.csv"
    counts.write_text("8,2,rose,tulip,lily\n" + table(",", header=""))
    bare = tmp_path / "bare.csv"
    bare.write_text(table(",", header=""))
    assert same(load(registry, f"file:path={counts},skip=1"), load(registry, str(bare)))
    assert_one_line_error(invoke("train", "--data", counts), "row 1", "skip=N")


def test_a_compressed_file_trains_from_the_command_line(tmp_path):
    path = tmp_path / "flowers.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(table(","))
    result = invoke("train", "--data", path, "--epochs", "2", "--hidden", "4", "--test-fraction", "0.4")
    assert result.exit_code == 0, result.output


def test_numbers_too_many_for_classes_suggest_a_regression(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,y\n1,2,3\n2,3,4\n3,4,5\n4,5,5\n")
    assert_one_line_error(invoke("train", "--data", path), "4 rows for 3 classes",
                          f"--data file:path={path},task=regression")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_predict_and_evaluate_read_compressed_files_too(tmp_path):
    plain = tmp_path / "flowers.csv"
    plain.write_text(table(","))
    model = tmp_path / "m.safetensors"
    assert invoke("train", "--data", plain, "--epochs", "2", "--hidden", "4", "--test-fraction", "0.4",
                  "--save", model).exit_code == 0
    packed = tmp_path / "flowers.csv.gz"
    with gzip.open(packed, "wt") as f:
        f.write(table(","))
    for command in ("predict", "evaluate"):
        want, got = invoke(command, model, "--input", plain), invoke(command, model, "--input", packed)
        assert got.exit_code == 0, got.output
        assert got.stdout.replace("flowers.csv.gz", "flowers.csv") == want.stdout
