"""Saving and loading models: bit-identical round trip, atomic writes, and bad files refused
with one line (never unpickled)."""

import json
import os
import pickle
import types

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error
from core import NNError, TrainSettings, default_registry, hookimpl, train
from core.data import preprocess
from core.files.atomic import atomic_write_bytes, temp_files
from core.errors import ModelFileError
from core.files.model_file import (
    FORMAT_VERSION,
    METADATA_KEY,
    checksum,
    load_model,
    parameter_names,
    save_model,
)

SMALL = TrainSettings(hidden=(6, 5), epochs=2, seed=4, n_train=200, n_test=100, loss="mse")


@pytest.fixture(scope="module")
def trained():
    return train(SMALL)


@pytest.fixture
def saved(tmp_path, trained):
    return save_model(tmp_path / "model.safetensors", trained)


def header_of(path):
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()[METADATA_KEY])


def rewrite(path, dest, *, header=None, tensors=None):
    """Copy a model file, changing its header and/or tensors; the copy carries the checksum
    of what it now holds, so the check under test is the one that refuses it."""
    tensors = tensors if tensors is not None else load_file(path)
    header = header if header is not None else header_of(path)
    header = {k: v for k, v in header.items() if k != "checksum"}
    header["checksum"] = checksum(header, tensors)
    save_file(tensors, dest, metadata={METADATA_KEY: json.dumps(header)})
    return dest


# -- round trip ------------------------------------------------------------------------


def test_round_trip_predicts_bit_for_bit(saved, trained):
    x = torch.rand(300, 2, generator=torch.Generator().manual_seed(9))
    loaded = load_model(saved)
    expected = trained.model.forward(preprocess.apply(trained.preprocessing, x))  # (300, 1)
    prediction = loaded.predict(x)
    assert torch.equal(prediction.scores, expected)
    assert torch.equal(prediction.classes, (expected > 0.5).long())
    assert loaded.settings == SMALL
    for (name, p), q in zip(parameter_names(loaded.model), trained.model.parameters()):
        assert torch.equal(p.value, q.value), name


def test_file_holds_architecture_settings_versions_and_plugins(saved, trained):
    header = header_of(saved)
    assert header["format_version"] == FORMAT_VERSION and header["kind"] == "model"
    assert header["architecture"] == [s.to_dict() for s in trained.specs]
    assert header["settings"] == SMALL.to_dict() and header["loss"] == "mse"
    assert header["framework_version"] and header["preprocessing"] == trained.preprocessing
    assert set(header["preprocessing"]) == {"standardize"}  # the default input step, saved
    plugins = {(c["kind"], c["name"]): c["plugin"] for c in header["components"]}
    assert plugins == {
        ("layer", "linear"): "plugins.linear", ("activation", "tanh"): "plugins.activations",
        ("loss", "mse"): "plugins.losses", ("initializer", "xavier"): "plugins.initializers",
    }
    assert all(c["version"] == header["framework_version"] for c in header["components"])
    assert sorted(load_file(saved)) == sorted(
        f"modules.{i}.{n}" for i in (0, 2, 4) for n in ("weight", "bias")
    )


def test_bce_model_classifies_with_its_loss_threshold(tmp_path):
    result = train(TrainSettings(hidden=(4,), epochs=1, loss="bce", n_train=100, n_test=10))
    loaded = load_model(save_model(tmp_path / "m.safetensors", result))
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(1))
    scores, classes = loaded.predict(x)
    assert torch.equal(classes, (scores > 0.0).long())
    assert torch.equal(scores, result.model.forward(preprocess.apply(result.preprocessing, x)))


def test_standardize_preprocessing_is_applied_before_the_network():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    out = preprocess.apply({"standardize": {"mean": [1.0, 2.0], "std": [2.0, 4.0]}}, x)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert preprocess.apply({}, x) is x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_saved_from_cuda_loads_on_cpu(tmp_path, trained):
    x = torch.rand(100, 2, generator=torch.Generator().manual_seed(3))
    expected = trained.model.forward(x)
    on_gpu = train(SMALL)
    for p in on_gpu.model.parameters():
        p.value = p.value.cuda()
    loaded = load_model(save_model(tmp_path / "gpu.safetensors", on_gpu))
    assert all(p.value.device.type == "cpu" for p in loaded.model.parameters())
    assert torch.equal(loaded.predict(x).scores, expected)


# -- atomic writes ---------------------------------------------------------------------


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(NNError, match="No space left"):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert temp_files(target) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and temp_files(target) == []


def test_write_keeps_ordinary_permissions(tmp_path):
    target = atomic_write_bytes(tmp_path / "m.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# -- bad files -------------------------------------------------------------------------


def swish_plugin():
    class Swish:
        """x * sigmoid(x)."""

        def forward(self, x):
            self.x = x
            return x * torch.sigmoid(x)

        def backward(self, g):
            s = torch.sigmoid(self.x)
            return g * (s + self.x * s * (1 - s))

        def parameters(self):
            return []

    return types.SimpleNamespace(
        register_activations=hookimpl(lambda register: register("swish", Swish))
    )


def bad_files(tmp_path, saved):
    """name -> (path, fragments the one-line error must hold)."""
    data = saved.read_bytes()
    files = {}

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    files["truncated"] = (truncated, ["truncated.safetensors", "not a model file"])

    random_bytes = tmp_path / "random.safetensors"
    random_bytes.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                           dtype=torch.uint8).numpy().tobytes())
    files["random bytes"] = (random_bytes, ["random.safetensors", "not a model file"])

    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    files["pickle"] = (pickled, ["model.pkl", "not a model file"])

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    files["empty"] = (empty, ["empty.safetensors", "not a model file"])

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    files["foreign safetensors"] = (foreign, ["not an nn-scratch model", "'nn_scratch'"])

    tensors = load_file(saved)
    tensors["modules.2.weight"] = torch.zeros(6, 7)
    files["wrong shape"] = (
        rewrite(saved, tmp_path / "shape.safetensors", tensors=tensors),
        ["'modules.2.weight'", "[6, 7]", "[6, 5]"],
    )

    tensors = load_file(saved)
    del tensors["modules.4.bias"]
    files["missing tensor"] = (
        rewrite(saved, tmp_path / "missing.safetensors", tensors=tensors), ["missing tensor 'modules.4.bias'"]
    )

    header = header_of(saved)
    header["format_version"] = FORMAT_VERSION + 1
    files["newer format"] = (
        rewrite(saved, tmp_path / "newer.safetensors", header=header),
        [f"format version {FORMAT_VERSION + 1}", f"up to {FORMAT_VERSION}", "upgrade"],
    )

    header = header_of(saved)
    header["architecture"][1]["name"] = "softsign"
    files["unknown component"] = (
        rewrite(saved, tmp_path / "softsign.safetensors", header=header),
        ["activation 'softsign'", "no installed plugin registers"],
    )

    header = header_of(saved)
    header["architecture"][1]["name"] = "tahn"
    header["components"].append({"kind": "activation", "name": "tahn",
                                 "plugin": "plugins.activations", "version": "0.1.0"})
    files["component its plugin lacks"] = (
        rewrite(saved, tmp_path / "tahn.safetensors", header=header),
        ["activation 'tahn'", "plugin 'plugins.activations'", "registers no activation"],
    )

    registry = default_registry()
    registry.add_plugin(swish_plugin(), name="nn_swish")
    with_plugin = train(TrainSettings(act="swish", hidden=(4,), epochs=1, n_train=50, n_test=10),
                        registry)
    files["plugin not installed"] = (
        save_model(tmp_path / "swish.safetensors", with_plugin, registry=registry),
        ["activation 'swish'", "plugin 'nn_swish'", "not installed"],
    )

    files["does not exist"] = (tmp_path / "nope.safetensors", ["cannot read", "nope.safetensors"])
    return files


BAD = ["truncated", "random bytes", "pickle", "empty", "foreign safetensors", "wrong shape",
       "missing tensor", "newer format", "unknown component", "component its plugin lacks",
       "plugin not installed", "does not exist"]


def test_every_bad_file_is_covered(tmp_path, saved):
    assert sorted(bad_files(tmp_path, saved)) == sorted(BAD)


@pytest.mark.parametrize("case", BAD)
def test_bad_file_is_one_line_and_exit_2(tmp_path, saved, case):
    path, fragments = bad_files(tmp_path, saved)[case]
    with pytest.raises(NNError):
        load_model(path)
    rows = tmp_path / "rows.csv"
    rows.write_text("0.5,0.5\n")
    for command in (["predict", str(path), "--input", str(rows)], ["evaluate", str(path)]):
        assert_one_line_error(CliRunner().invoke(app, command, catch_exceptions=False), *fragments)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(os.system))
    with pytest.raises(ModelFileError, match="not a model file"):
        load_model(evil)
