"""Model-file format versions: files written by earlier nn-scratch load and predict the same,
each migration does what its version's history says, and the layout cannot change unnoticed.

The fixtures (tests/fixtures/model_files, README there) were written by the code of four
earlier commits, each with the predictions that code made.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core import TrainSettings, load_model, save_model, train
from core.errors import ModelFileError, UnverifiedFileWarning
from core.files import versions
from core.files.checkpoint import Checkpointing, read_checkpoint
from core.files.model_file import METADATA_KEY, checksum, read_model_file
from core.files.versions import FORMAT_VERSION, LAYOUT, MIGRATIONS, migrate
from core.training.settings import DATA_FIELDS

FIXTURES = Path(__file__).parent / "fixtures" / "model_files"
FILES = sorted(FIXTURES.glob("v*/*.safetensors"))
SMALL = TrainSettings(hidden=(5,), epochs=2, n_train=100, n_test=50, seed=2)


def written_version(path: Path) -> int:
    return int(path.parent.name.split("_")[0].removeprefix("v"))


def header_of(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()[METADATA_KEY])


def quiet_load(path):
    """load_model, taking the note an unverified (pre-checksum) file gets as expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedFileWarning)
        return load_model(path)


# -- every earlier file loads and predicts as its own version did ----------------------


def test_there_are_fixtures_of_every_earlier_version_and_of_each_kind():
    assert {written_version(p) for p in FILES} >= set(range(1, FORMAT_VERSION))
    kinds = {header_of(p)["kind"] for p in FILES}
    assert kinds == {"model", "checkpoint"}
    assert all(header_of(p)["format_version"] == written_version(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_earlier_file_predicts_what_its_own_version_predicted(path):
    record = json.loads(path.with_suffix(".json").read_text())
    loaded = quiet_load(path)
    prediction = loaded.predict(torch.tensor(record["inputs"], dtype=torch.float64))
    assert torch.equal(prediction.scores.double(), torch.tensor(record["scores"], dtype=torch.float64))
    if record["classes"] is None:
        assert prediction.classes is None
    else:
        assert prediction.classes.tolist() == record["classes"]
    assert loaded.header["format_version"] == FORMAT_VERSION  # migrated to today's layout


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_earlier_file_migrates_to_todays_layout(path):
    file = read_model_file(path) if "checksum" in header_of(path) else _read_unverified(path)
    header = file.header
    assert file.written_version == written_version(path) and header["format_version"] == FORMAT_VERSION
    assert set(header) == {"format", "format_version", *LAYOUT[header["kind"]]}
    assert list(header["dataset"]) == LAYOUT["dataset"]
    if header["kind"] == "checkpoint":
        assert set(LAYOUT["training"]) <= set(header["training"])
        checkpoint = read_checkpoint(path)
        assert checkpoint.epoch == len(checkpoint.losses) == 2


def _read_unverified(path):
    file = read_model_file(path)
    assert not file.verified and file.header["checksum"] is None
    return file


HALF = sorted(FIXTURES.glob("v*/disk_half_checkpoint.safetensors"))


@pytest.mark.parametrize("path", HALF, ids=lambda p: p.parent.name)
def test_an_earlier_checkpoint_resumed_today_ends_as_its_own_version_ended(path):
    """A checkpoint after 2 of 4 epochs, resumed: the losses and errors of that version's
    uninterrupted run, bit for bit (issue 6's run needs its settings' values of then: no
    input step and a constant rate, not today's defaults)."""
    whole = json.loads(path.with_suffix(".json").read_text())["uninterrupted"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedFileWarning)
        checkpoint = read_checkpoint(path)
    result = train(checkpoint.settings, resume=checkpoint)
    assert result.losses == whole["losses"]
    assert (result.train_error, result.test_error) == (whole["train_error"], whole["test_error"])


def test_an_earlier_checkpoint_resumes_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    for folder in ("v1_issue6", "v1_0.1.0", "v1_main"):
        copy = tmp_path / f"{folder}.safetensors"
        copy.write_bytes((FIXTURES / folder / "disk_checkpoint.safetensors").read_bytes())
        result = CliRunner().invoke(app, ["train", "--resume", str(copy)])
        assert result.exit_code == 0, result.output


# -- version 1 -> 2, addition by addition -----------------------------------------------


def test_settings_a_file_predates_get_the_values_its_run_had():
    # issue 6's run had no input step and a constant rate: today's defaults would change it
    checkpoint = read_checkpoint(FIXTURES / "v1_issue6" / "disk_checkpoint.safetensors")
    assert checkpoint.settings.preprocess == "none" and checkpoint.settings.schedule == "constant"
    assert checkpoint.file.header["preprocessing"] == {}
    assert TrainSettings().preprocess != "none" and TrainSettings().schedule != "constant"


def test_act_and_hidden_beside_layers_become_null_as_written_now():
    path = FIXTURES / "v1_0.1.0" / "disk_layers.safetensors"
    assert header_of(path)["settings"]["act"] == "tanh"  # 0.1.0 wrote the defaults
    loaded = quiet_load(path)
    assert loaded.header["settings"]["act"] is None and loaded.header["settings"]["hidden"] is None
    assert loaded.settings.layers == "linear:out=8,relu,linear:out=1"
    header = {"settings": {"layers": None, "act": "relu", "hidden": [3]}}
    versions.settings_v1_to_v2(header)
    assert header["settings"]["act"] == "relu" and header["settings"]["hidden"] == [3]


def test_a_file_from_before_datasets_was_trained_on_the_disk():
    path = FIXTURES / "v1_0.1.0" / "disk_mlp.safetensors"
    assert "dataset" not in header_of(path)
    loaded = quiet_load(path)
    assert loaded.dataset == versions.DATASET_BEFORE_DATASETS
    assert loaded.task == "binary" and loaded.class_names == ["0", "1"]


def test_a_checkpoint_from_before_dropout_names_the_stream_it_lacks():
    old = read_checkpoint(FIXTURES / "v1_0.1.0" / "disk_checkpoint.safetensors")
    assert "rng.init" not in old.file.tensors
    assert old.file.header["training"]["unsaved_streams"] == ["init"]
    new = read_checkpoint(FIXTURES / "v1_main" / "disk_checkpoint.safetensors")
    assert "rng.init" in new.file.tensors and "unsaved_streams" not in new.file.header["training"]


def test_a_file_from_before_checksums_loads_unverified_with_a_note():
    path = FIXTURES / "v1_0.1.0" / "disk_mlp.safetensors"
    with pytest.warns(UnverifiedFileWarning, match="no checksum"):
        load_model(path)
    assert read_model_file(FIXTURES / "v1_main" / "disk_mlp.safetensors").verified


def test_files_of_todays_layout_labelled_1_need_no_change_but_the_label():
    for path in sorted((FIXTURES / "v1_main").glob("*.safetensors")):
        header, tensors = header_of(path), load_file(path)
        migrated, same = migrate(header, tensors)
        assert migrated == {**header, "format_version": FORMAT_VERSION}
        assert same.keys() == tensors.keys()
        assert header["format_version"] == 1  # the caller's header is left alone


def test_without_a_checksum_a_file_of_version_2_is_refused_and_labelled_1_is_unverified(tmp_path):
    result = train(SMALL)
    path = save_model(tmp_path / "m.safetensors", result)
    header, tensors = header_of(path), load_file(path)
    del header["checksum"]
    save_file(tensors, path, metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="no checksum"):
        load_model(path)
    header["format_version"] = 1
    save_file(tensors, path, metadata={METADATA_KEY: json.dumps(header)})
    with pytest.warns(UnverifiedFileWarning):
        load_model(path)


def test_a_version_2_file_without_its_dataset_entry_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", train(SMALL))
    header, tensors = header_of(path), load_file(path)
    del header["dataset"], header["checksum"]
    header["checksum"] = checksum(header, tensors)
    save_file(tensors, path, metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="'dataset' missing"):
        load_model(path)


# -- the layout cannot change without a new version ------------------------------------


def test_the_settings_defaults_are_those_of_this_version():
    """A file lacking a setting means its default: changing one needs a new format version,
    whose migration writes the old default into older files. (New settings may be added.)"""
    today = TrainSettings().to_dict() | DATA_FIELDS  # to_dict leaves out the data fields' defaults
    assert {k: today.get(k, "<removed>") for k in versions.SETTINGS_DEFAULTS} == versions.SETTINGS_DEFAULTS


def test_one_migration_per_earlier_version():
    assert sorted(MIGRATIONS) == list(range(1, FORMAT_VERSION))


def test_a_file_written_now_has_exactly_the_layout_of_its_version(tmp_path):
    """Fails when a field is added or dropped without a new format version (versions.py)."""
    settings = dataclasses.replace(SMALL, epochs=1)
    checkpoint = tmp_path / "c.safetensors"
    result = train(settings, checkpoint=Checkpointing(checkpoint, 1))
    model = save_model(tmp_path / "m.safetensors", result)
    for path, kind in ((model, "model"), (checkpoint, "checkpoint")):
        header = header_of(path)
        assert header["format_version"] == FORMAT_VERSION and header["kind"] == kind
        assert list(header) == ["format", "format_version", *LAYOUT[kind]]
        assert list(header["dataset"]) == LAYOUT["dataset"]
    assert list(header_of(checkpoint)["training"]) == LAYOUT["training"]
