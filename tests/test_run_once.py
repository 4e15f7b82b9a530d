"""One run, built once: the library resolves settings as `nn-cli train` does, and one command
builds its dataset (and reads its file) once."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import core
import core.data.dataset
import core.data.reading
from cli import app
from core import TrainSettings, default_registry, train
from core.errors import SettingsError
from core.pipeline.prepare import prepare
from core.pipeline.resolve import EVERY_FIELD, TASK_LOSSES, resolve

# Every built-in dataset that needs no file or folder; and a CSV file beside them.
BUILT_IN = ("breast_cancer", "circles", "denoise", "diabetes", "digits", "disk", "gauss", "iris",
            "moons", "spiral", "wine", "xor")


def cli_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["train", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def csv_file(tmp_path):
    rows = ["a,b,label"] + [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{int(i % 7 > 3)}" for i in range(80)]
    path = tmp_path / "points.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_library_resolves_a_dataset_as_the_cli_does_with_no_option_given(name):
    """`core.train(TrainSettings(data=NAME))` takes the dataset's defaults and the task's
    loss as `nn-cli train --data NAME` does (which typed only --data)."""
    registry = default_registry()
    library = resolve(TrainSettings(data=name), registry)
    command_line = resolve(TrainSettings(data=name), registry, given={"data"})
    assert library.settings == command_line.settings
    if name != "denoise":  # the one whose defaults choose a loss
        task = prepare(library, registry).data.task
        assert library.settings.loss == TASK_LOSSES[task]


@pytest.mark.parametrize("name", [*BUILT_IN, "spiral:arms=3", "file"])
def test_core_train_and_nn_cli_train_give_the_same_json(name, csv_file):
    """The same options, the same run: the library's JSON is the command's, byte for byte."""
    data = csv_file if name == "file" else name
    ours = json.dumps(train(TrainSettings(data=data, epochs=1)).to_dict())
    assert json.loads(ours) == cli_json("--data", data, "--epochs", "1")


def test_spiral_with_three_arms_trains_from_the_library():
    """The issue's case: the library once raised "loss 'bce' does not fit"."""
    result = train(TrainSettings(data="spiral:arms=3", epochs=1))
    assert result.settings.loss == "cross_entropy" and result.task == "multiclass"


def test_an_option_given_wins_over_the_datasets_default():
    registry = default_registry()
    digits = resolve(TrainSettings(data="digits", epochs=150), registry, given={"data", "epochs"})
    assert digits.settings.epochs == 150 and digits.settings.act == "relu"
    assert resolve(TrainSettings(data="digits"), registry).settings.epochs != 150
    with pytest.raises(SettingsError, match="does not fit"):
        prepare(resolve(TrainSettings(data="iris", loss="bce"), registry, given={"data", "loss"}))


def test_a_resolved_run_holds_its_text_parsed():
    registry = default_registry()
    run = resolve(TrainSettings(data="spiral:arms=3", layers="linear:out=8,tanh,linear:out=3"),
                  registry)
    assert run.data.name == "spiral" and run.data.options == {"arms": 3}
    assert [s.name for s in run.layers] == ["linear", "tanh", "linear"]
    assert run.layers[0].args == {"out_features": 8}
    assert resolve(run.settings, registry, EVERY_FIELD).settings == run.settings


class Counts:
    """Wraps the dataset builder and the file reader, counting the calls."""

    def __init__(self, monkeypatch):
        self.builds = self.reads = 0
        build, read = core.data.dataset.build_from_factory, core.data.reading.read_data_file

        def counted_build(*args, **kwargs):
            self.builds += 1
            return build(*args, **kwargs)

        def counted_read(*args, **kwargs):
            self.reads += 1
            return read(*args, **kwargs)

        monkeypatch.setattr(core.data.dataset, "build_from_factory", counted_build)
        monkeypatch.setattr(core.data.reading, "read_data_file", counted_read)
        monkeypatch.setattr(core, "read_data_file", counted_read, raising=False)


@pytest.mark.parametrize("options", [[], ["--summary"], ["--val-fraction", "0.2"]],
                         ids=["train", "summary", "val-fraction"])
def test_nn_cli_train_on_a_csv_builds_and_reads_it_once(monkeypatch, csv_file, options):
    counts = Counts(monkeypatch)
    result = CliRunner().invoke(app, ["train", "--data", csv_file, "--epochs", "2", *options])
    assert result.exit_code == 0, result.output
    assert (counts.builds, counts.reads) == (1, 1)


def test_nn_cli_train_with_a_loss_given_builds_its_dataset_once(monkeypatch):
    counts = Counts(monkeypatch)
    result = CliRunner().invoke(app, ["train", "--data", "moons", "--loss", "bce", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (counts.builds, counts.reads) == (1, 0)


def test_error_rate_measures_any_task():
    """`core.error_rate`: the fraction misclassified for classes, the RMSE for regression."""
    registry = default_registry()
    for name, task in (("moons", "binary"), ("iris", "multiclass"), ("diabetes", "regression")):
        result = train(TrainSettings(data=name, epochs=2, seed=3))
        run = prepare(resolve(result.settings, registry, EVERY_FIELD), registry)
        d = run.data
        got = core.error_rate(result.model, run.loss, d.x_test, d.labels_test, task=task,
                              one_hot=d.one_hot, preprocessing=d.preprocessing)
        assert got == pytest.approx(result.test_error, rel=1e-12, abs=0) and result.task == task
    # the disk's 0/1 labels as (n, 1) floats, as README's piece-by-piece example passes them
    disk = train(TrainSettings(epochs=2))
    run = prepare(resolve(disk.settings, registry, EVERY_FIELD), registry)
    y = run.data.labels_test.double().view(-1, 1)
    assert core.error_rate(disk.model, run.loss, run.data.x_test, y) == disk.test_error


def test_dataset_defaults_are_an_argument_of_register():
    from core.errors import RegistrationError
    from core.plugin.registry import Registry

    registry = default_registry()
    assert registry.get("dataset", "digits").defaults["hidden"] == (256,)
    assert registry.get("dataset", "moons").defaults == {}

    class Plugin:
        @core.hookimpl
        def register_datasets(self, register):
            register("tiny", lambda: None, defaults={"epochs": 3, "colour": "red"})

    class Wrong:
        @core.hookimpl
        def register_losses(self, register):
            register("odd", registry.get("loss", "mse").factory, defaults={"epochs": 3})

    with pytest.raises(RegistrationError, match="for a dataset only"):
        Registry().add_plugin(Wrong(), name="wrong")
    ours = Registry()
    ours.add_plugin(Plugin(), name="tiny")
    with pytest.raises(SettingsError, match="'colour', which are no settings"):
        resolve(TrainSettings(data="tiny"), ours)


def test_nn_cli_train_reads_the_data_and_layers_text_once():
    """The settings' check and resolve share one reading of each text; every later step
    takes the specs (core.data.dataset.DataSpec, core.network.assemble.LayerSpec)."""
    import core.network.stack as stack

    core.data.dataset._read_data_text.cache_clear()
    stack._read_layer_text.cache_clear()
    result = CliRunner().invoke(app, ["train", "--data", "spiral:arms=2,noise=0.25", "--epochs", "1",
                                      "--layers", "linear:out=7,tanh,linear:out=1"])
    assert result.exit_code == 0, result.output
    assert core.data.dataset._read_data_text.cache_info().misses == 1
    assert stack._read_layer_text.cache_info().misses == 1
