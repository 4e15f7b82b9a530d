"""Datasets as plugins: the contract, the built-ins, --data text, splits, tasks, files,
bad data, and everything downstream (runs, compare, save/predict/evaluate), through the
library and through CliRunner."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core import Dataset, TrainSettings, disk_dataset, hookimpl, run_many, train
from core.data.dataset import DataError, build_dataset, parse_data_text
from core.data.split import split_indices
from core.errors import SettingsError
from core.pipeline.prepare import datasets, prepare
from core.pipeline.resolve import generator, resolve
from nn_testing import CheckFailed, check_dataset
from test_cli import assert_one_line_error

BUILTINS = ["disk", "moons", "circles", "xor", "spiral", "gauss",
            "digits", "iris", "wine", "breast_cancer", "diabetes"]
TWO_D = ["moons", "circles", "xor", "spiral", "gauss"]
FAST = ["--epochs", "3"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def json_of(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the contract and the built-ins -------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_keeps_the_contract(registry, name):
    check_dataset(name, registry=registry)


def test_data_text_reads_like_layers_options():
    assert parse_data_text("spiral:arms=3,noise=0.2,n=900") == (
        "spiral", {"arms": 3, "noise": 0.2, "n": 900})
    assert parse_data_text("moons") == ("moons", {})
    assert parse_data_text("data/points.csv") == ("file", {"path": "data/points.csv"})
    assert parse_data_text("points.TSV") == ("file", {"path": "points.TSV"})
    for bad in ["", "spiral:arms", "spiral:arms=3,arms=4", "3d:n=1"]:
        with pytest.raises(SettingsError):
            parse_data_text(bad)


def test_the_disk_draws_exactly_what_it_always_drew(registry):
    settings = TrainSettings(seed=5, n_train=300, n_test=200)
    for dtype, torch_dtype in (("float32", torch.float32), ("float64", torch.float64)):
        x_train, y_train, x_test, y_test = datasets(
            TrainSettings(seed=5, n_train=300, n_test=200, dtype=dtype), registry)
        g = generator(settings, "data")
        expected = [*disk_dataset(300, g, torch_dtype), *disk_dataset(200, g, torch_dtype)]
        for got, want in zip((x_train, y_train, x_test, y_test), expected, strict=True):
            assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("name", TWO_D)
def test_two_d_sets_follow_their_seed_and_options(registry, name):
    def build(text, seed):
        return build_dataset(registry, text, generator=torch.Generator().manual_seed(seed))

    a, b, c = build(f"{name}:n=60", 0), build(f"{name}:n=60", 0), build(f"{name}:n=60", 1)
    assert a.x_train.shape == (60, 2) and a.input_shape == (2,) and a.x_test is None
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.bincount(a.y_train).tolist() in ([30, 30],)  # both classes, evenly
    quiet, loud = build(f"{name}:n=60,noise=0", 0), build(f"{name}:n=60,noise=0.5", 0)
    assert not torch.equal(quiet.x_train, loud.x_train)


def test_spiral_has_as_many_classes_as_arms(registry):
    data = build_dataset(registry, "spiral:arms=4,n=100", generator=torch.Generator().manual_seed(0))
    assert data.task == "multiclass" and data.n_classes == 4
    assert torch.bincount(data.y_train).tolist() == [25, 25, 25, 25]


def test_digits_are_eight_by_eight_images_of_ten_classes(registry):
    data = build_dataset(registry, "digits", generator=torch.Generator().manual_seed(0))
    assert data.input_shape == (1, 8, 8) and data.x_train.shape == (1797, 64)
    assert data.class_names == tuple(str(d) for d in range(10)) and data.task == "multiclass"
    assert build_dataset(registry, "diabetes", generator=torch.Generator()).task == "regression"


def test_a_table_without_scikit_learn_says_which_extra_to_install(registry, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(DataError, match=r"pip install 'nn-scratch\[datasets\]'"):
        build_dataset(registry, "digits", generator=torch.Generator())


def test_unknown_options_and_bad_values_name_what_is_accepted(registry):
    g = torch.Generator()
    with pytest.raises(SettingsError, match="'bogus' is not an option"):
        build_dataset(registry, "spiral:bogus=1", generator=g)
    with pytest.raises(SettingsError, match="its options are n, arms, noise"):
        build_dataset(registry, "spiral:bogus=1", generator=g)
    with pytest.raises(DataError, match="noise must be a finite number >= 0"):
        build_dataset(registry, "moons:noise=-1", generator=g)
    with pytest.raises(SettingsError, match="comes from the run"):
        build_dataset(registry, "moons:generator=1", generator=g)


def test_check_dataset_names_what_a_broken_dataset_breaks():
    def bad_labels(generator):
        x = torch.rand(10, 2, generator=generator, dtype=torch.float64)
        return Dataset("bad", "binary", x, torch.arange(10), ("a", "b"), (2,), ("0", "1"))

    with pytest.raises(CheckFailed, match="contract: y_train holds class 9"):
        check_dataset(bad_labels)

    def unseeded(generator):
        x = torch.rand(10, 2, dtype=torch.float64)  # ignores the generator
        return Dataset("u", "binary", x, torch.arange(10) % 2, ("a", "b"), (2,), ("0", "1"))

    with pytest.raises(CheckFailed, match="determinism under a seed"):
        check_dataset(unseeded)


# -- splits ---------------------------------------------------------------------------


def test_splits_are_seeded_and_stratified():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    keep, held = split_indices(y, 0.25, torch.Generator().manual_seed(0), task="multiclass")
    again = split_indices(y, 0.25, torch.Generator().manual_seed(0), task="multiclass")
    assert torch.equal(keep, again[0]) and torch.equal(held, again[1])
    assert torch.bincount(y[held]).tolist() == [15, 8, 2] or torch.bincount(y[held]).tolist() == [15, 7, 3]
    assert len(held) == 25 and sorted(keep.tolist() + held.tolist()) == list(range(100))


def test_the_test_set_is_never_trained_on(registry):
    settings = TrainSettings(data="moons:n=200", epochs=1, val_fraction=0.2)
    data = prepare(resolve(settings, registry), registry).data
    rows = lambda x: {tuple(r) for r in x.tolist()}  # noqa: E731
    assert not rows(data.x_train) & rows(data.x_test)
    assert not rows(data.x_val) & rows(data.x_test) and not rows(data.x_val) & rows(data.x_train)
    assert len(data.x_test) == 50 and len(data.x_val) == 30 and len(data.x_train) == 120


@pytest.mark.parametrize("fraction", ["1", "1.5", "-0.1"])
def test_a_test_fraction_outside_zero_one_is_one_line(fraction):
    assert_one_line_error(invoke("train", "--data", "moons", "--test-fraction", fraction),
                          "--test-fraction must be a number in [0, 1)")


def test_patience_stops_early_and_keeps_the_best_epoch(registry):
    settings = TrainSettings(data="iris", loss="ce", epochs=300, lr=0.05, val_fraction=0.25,
                             patience=5, schedule="constant")
    result = train(settings, registry)
    assert len(result.losses) < 300 and result.best_epoch == len(result.losses) - 5
    assert_one_line_error(invoke("train", "--patience", "3"), "give --val-fraction too")


# -- tasks through the CLI ---------------------------------------------------------------


def test_list_and_info_show_datasets():
    listed = invoke("list", "dataset")
    assert listed.exit_code == 0
    for name in BUILTINS + ["file"]:
        assert f"  {name} " in listed.stdout
    info = invoke("info", "spiral")
    assert "arms" in info.stdout and "the run's seeded generator" in info.stdout
    assert "defaults for options not typed: act=relu" in invoke("info", "digits").stdout


def test_a_multiclass_run_reports_classes_and_a_confusion_matrix():
    out = json_of("train", "--data", "spiral:arms=3,n=300", *FAST)
    assert out["task"] == "multiclass" and out["settings"]["loss"] == "cross_entropy"
    assert [c["class"] for c in out["metrics"]["classes"]] == ["arm 0", "arm 1", "arm 2"]
    matrix = out["metrics"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 75
    wrong = 75 - sum(matrix[i][i] for i in range(3))
    assert out["test_error"] == wrong / 75 == out["metrics"]["error"]
    text = invoke("train", "--data", "spiral:arms=3,n=300", *FAST)
    assert "confusion matrix" in text.stdout and "precision" in text.stdout


def test_a_loss_that_does_not_fit_the_task_lists_the_ones_that_do():
    assert_one_line_error(invoke("train", "--data", "digits", "--loss", "bce", *FAST),
                          "loss 'bce' does not fit this multiclass task", "cross_entropy", "mse")
    assert_one_line_error(invoke("train", "--data", "diabetes", "--loss", "ce", *FAST),
                          "regression task", "huber", "mae")


def test_layers_must_end_with_the_width_the_data_need():
    ok = json_of("train", "--data", "iris", "--layers", "linear:out=8,relu,linear:out=3", *FAST)
    assert ok["task"] == "multiclass"
    assert_one_line_error(
        invoke("train", "--data", "iris", "--layers", "linear:out=8,relu,linear:out=1", *FAST),
        "must end with 3 output features")


def test_regression_reports_rmse_mae_and_r2():
    out = json_of("train", "--data", "diabetes", *FAST)
    assert out["task"] == "regression" and set(out["metrics"]) == {"rmse", "mae", "r2"}  # PSNR: images only
    assert out["test_error"] == pytest.approx(out["metrics"]["rmse"])
    text = invoke("train", "--data", "diabetes", *FAST).stdout
    assert "R^2" in text and "PSNR" not in text  # a figure of pixels, not of a table's target


def test_runs_of_a_multiclass_dataset_train_together_like_one_at_a_time():
    args = ["train", "--data", "spiral:arms=3,n=300", "--runs", "3", "--dtype", "float64", *FAST]
    together, apart = json_of(*args), json_of(*args, "--one-at-a-time")
    for a, b in zip(together["runs"], apart["runs"]):
        assert a["test_error"] == b["test_error"]
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-11)


def test_compare_takes_datasets_as_configurations():
    out = json_of("compare", "--data", "moons", "--data", "circles", "--epochs", "2")
    assert [c["label"] for c in out["configurations"]] == ["--data moons", "--data circles"]


def test_plot_draws_what_the_data_call_for(tmp_path):
    assert invoke("train", "--data", "digits", "--epochs", "1", "--plot", tmp_path / "d").exit_code == 0
    assert {p.name for p in (tmp_path / "d").iterdir()} == {"loss.png", "confusion.png", "misclassified.png"}
    assert invoke("train", "--data", "spiral:arms=3", "--epochs", "1", "--plot", tmp_path / "s").exit_code == 0
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"loss.png", "confusion.png", "test_points.png"}
    assert invoke("train", "--epochs", "1", "--plot", tmp_path / "k").exit_code == 0  # the disk
    assert {p.name for p in (tmp_path / "k").iterdir()} == {"loss.png", "confusion.png", "test_points.png"}
    assert invoke("train", "--data", "diabetes", "--epochs", "1", "--plot", tmp_path / "r").exit_code == 0
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"loss.png", "predicted.png"}


def test_the_defaults_of_a_dataset_apply_to_options_not_typed():
    out = json_of("train", "--data", "digits", "--epochs", "1")
    assert out["settings"]["epochs"] == 1  # typed
    assert out["settings"]["hidden"] != [25, 25, 25]  # the dataset's
    assert out["settings"]["loss"] == "cross_entropy"


# -- files ----------------------------------------------------------------------------

FLOWERS = "size,weight,species\n" + "".join(
    f"{1 + 0.1 * (i % 5)},{2 - 0.1 * (i % 3)},rose\n{3 + 0.1 * (i % 4)},{0.5 + 0.1 * (i % 2)},tulip\n"
    f"{2 + 0.1 * (i % 3)},{3 + 0.1 * (i % 4)},lily\n" for i in range(12)
)


@pytest.fixture
def flowers(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(FLOWERS)
    return path


def test_string_labels_round_trip_through_save_and_predict(flowers, tmp_path):
    model = tmp_path / "m.safetensors"
    trained = invoke("train", "--data", flowers, "--target", "species", "--epochs", "60",
                     "--save", model)
    assert trained.exit_code == 0, trained.output
    predicted = invoke("predict", model, "--input", flowers, "--format", "json")
    rows = json.loads(predicted.stdout)
    assert [r["class"] for r in rows] == ["rose", "tulip", "lily"] * 12
    proba = json.loads(invoke("predict", model, "--input", flowers, "--format", "json", "--proba").stdout)
    assert set(proba[0]) == {"score", "class", "p_lily", "p_rose", "p_tulip"}
    assert all(abs(r["p_lily"] + r["p_rose"] + r["p_tulip"] - 1) < 1e-6 for r in proba)
    evaluated = json_of("evaluate", model, "--input", flowers)
    assert evaluated["error"] == 0.0 and evaluated["n"] == 36


@pytest.mark.parametrize("kind", ["tsv", "json", "npz"])
def test_tsv_json_and_npz_read_as_the_csv_does(registry, flowers, tmp_path, kind, reader):
    lines = [line.split(",") for line in FLOWERS.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    path = tmp_path / f"flowers.{kind}"
    if kind == "tsv":
        path.write_text("\n".join("\t".join(r) for r in lines) + "\n")
    elif kind == "json":
        path.write_text(json.dumps([{h: (v if h == "species" else float(v)) for h, v in zip(header, r)}
                                    for r in rows]))
    else:
        np.savez(path, x=np.array([[float(v) for v in r[:2]] for r in rows]),
                 y=np.array([r[2] for r in rows]), feature_names=np.array(header[:2]))
    target = {"tsv": "species", "json": "species", "npz": None}[kind]
    g = torch.Generator()
    expected = build_dataset(registry, str(flowers), generator=g, context={"target": "species"})
    got = build_dataset(registry, str(path), generator=g, context={"target": target})
    assert torch.equal(got.x_train, expected.x_train) and torch.equal(got.y_train, expected.y_train)
    assert got.class_names == ("lily", "rose", "tulip") and got.feature_names == ("size", "weight")


def test_the_target_defaults_to_label_else_the_last_column(registry, tmp_path, reader):
    path = tmp_path / "t.csv"
    path.write_text("label,a,b\n1,0.1,5\n0,0.2,6\n1,0.3,7\n0,0.4,8\n")
    data = build_dataset(registry, str(path), generator=torch.Generator())
    assert data.feature_names == ("a", "b") and data.y_train.tolist() == [1, 0, 1, 0]
    path.write_text("a,b,c\n0.1,5,x\n0.2,6,y\n0.3,7,x\n0.4,8,y\n")
    assert build_dataset(registry, str(path), generator=torch.Generator()).class_names == ("x", "y")


def test_real_valued_targets_make_a_regression(registry, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{0.5 * i + 0.25}\n" for i in range(20)))
    data = build_dataset(registry, str(path), generator=torch.Generator())
    assert data.task == "regression" and data.y_train.shape == (20, 1)
    out = json_of("train", "--data", path, *FAST)
    assert out["task"] == "regression"


BAD_FILES = [
    ("a,b,label\n1,2,x\n3,4,y\n", ["--target", "kind"], ["no target column 'kind'", "columns: a, b, label"]),
    ("a,b,label\n1,2,x\n3,oops,y\n1,1,x\n", [], ["row 3", "column 'b'", "'oops' is not a number"]),
    ("a,b,label\n1,2,x\n3,nan,y\n1,1,x\n", [], ["row 3", "column 'b'", "not a finite number"]),
    ("a,b,label\n1,2,x\n3,inf,y\n1,1,x\n", [], ["row 3", "column 'b'", "not a finite number"]),
    ("a,b,label\n1,2,x\n3,4,x\n5,6,x\n", [], ["every row has the label 'x'", "at least two classes"]),
    ("a,b,label\n1,2,x\n3,4,y\n5,6,z\n", [], ["3 rows for 3 classes", "at least 2 rows"]),
    ("a,b,label\n1,2,x\n3,4,y\n5,6,y\n7,8,x\n9,9,z\n1,1,x\n", [], ["class 'z' has 1 row"]),
    ("a,b,label\n1,2,x\n3,,y\n1,1,x\n", [], ["row 3", "column 'b'", "is empty"]),
    ("a,b,label\n", [], ["a header line and no rows of data"]),
    ("a,b,label\n\n\n", [], ["a header line and no rows of data"]),
]


@pytest.fixture(params=["pandas", "numpy"])
def reader(request, monkeypatch):
    """Files are read with pandas when it is installed, else with numpy: both, the same."""
    if request.param == "numpy":
        monkeypatch.setattr("core.data.reading._pandas", lambda: None)
    return request.param


@pytest.mark.parametrize(("text", "extra", "fragments"), BAD_FILES)
def test_bad_data_files_are_one_line_naming_file_row_and_column(tmp_path, reader, text, extra, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert_one_line_error(invoke("train", "--data", path, *extra, *FAST), str(path), *fragments)


def test_a_missing_file_and_an_unknown_suffix_are_one_line(tmp_path):
    assert_one_line_error(invoke("train", "--data", tmp_path / "none.csv"), "no such file")
    odd = tmp_path / "x.parquet"
    odd.write_text("")
    assert_one_line_error(invoke("train", "--data", f"file:path={odd}"), "unknown file type")


# -- a dataset from a plugin ---------------------------------------------------------------


class LinePlugin:
    """A third-party dataset: points above or below a line."""

    @staticmethod
    def line(generator, n: int = 200, slope: float = 1.0):
        x = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        y = (x[:, 1] > slope * x[:, 0]).long()
        return Dataset("line", "binary", x, y, ("u", "v"), (2,), ("below", "above"))

    @hookimpl
    def register_datasets(self, register):
        register("line", self.line)


def test_a_plugin_dataset_trains_like_a_builtin(registry):
    from core import default_registry

    own = default_registry()
    own.add_plugin(LinePlugin(), name="line_plugin")
    check_dataset("line", registry=own, slope=0.5)
    result = train(TrainSettings(data="line:slope=0.5", epochs=20), own)
    assert result.dataset["class_names"] == ["below", "above"] and result.test_error < 0.2


def test_a_short_row_is_named(tmp_path, reader):
    path = tmp_path / "short.csv"
    path.write_text("a,b,label\n1,2,x\n3,4\n1,1,y\n2,2,x\n3,3,y\n")
    assert_one_line_error(invoke("train", "--data", path, *FAST), "row 3 has 2 fields")


def test_a_checkpointed_run_of_another_dataset_resumes_bit_for_bit(registry, tmp_path):
    from core import Checkpointing, read_checkpoint

    settings = TrainSettings(data="spiral:arms=3,n=300", loss="ce", epochs=5, batch_size=40)
    whole = train(settings, registry)
    path = tmp_path / "run.ckpt.safetensors"
    train(settings, registry, checkpoint=Checkpointing(path, every=3))  # leaves epoch 3's
    state = read_checkpoint(path, registry)
    assert state.epoch == 3 and state.file.header["dataset"]["class_names"] == ["arm 0", "arm 1", "arm 2"]
    resumed = train(state.settings, registry, resume=state)
    assert resumed.losses == whole.losses and resumed.metrics == whole.metrics
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(a.value, b.value)


def test_evaluate_without_a_file_replays_the_runs_test_rows(tmp_path):
    model = tmp_path / "iris.safetensors"
    trained = json_of("train", "--data", "iris", "--epochs", "20", "--save", model)
    evaluated = json_of("evaluate", model)
    assert evaluated["error"] == pytest.approx(trained["test_error"]) and evaluated["n"] == 38
    assert evaluated["source"] == "the test split of iris, seed 0"
