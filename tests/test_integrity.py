"""Files that never lie (issue 11): non-finite values refused, checksums verified, no NaN
score written, runs that share a file refused, memory estimated, input files hardened,
temporaries of killed writes removed. Each test failed before its fix."""

import json
import math
import struct

import pytest
import torch
from safetensors.torch import load, load_file, save_file
from typer.testing import CliRunner

from cli import app
from test_cli import assert_one_line_error
from test_model_file import saved, trained  # noqa: F401 -- the fixtures, shared
from core.files.atomic import temp_files, write_lock
from core.files.checkpoint import read_checkpoint
from core.errors import ModelFileError
from core.files.model_file import CHECKSUM_KEY, METADATA_KEY, checksum, load_model, save_model

FAST = ["--epochs", "2", "--hidden", "6,5", "--seed", "4"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def split(path):
    """(safetensors JSON header as a dict, data section bytes) of a file."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def resign(path):
    """Record the checksum of the file as it now is: an edit that only a bug could make."""
    outer, body = split(path)
    inner = json.loads(outer["__metadata__"][METADATA_KEY])
    inner[CHECKSUM_KEY] = checksum(inner, load(path.read_bytes()))
    outer["__metadata__"][METADATA_KEY] = json.dumps(inner)
    return join(path, outer, body)


def unsign(path):
    """The file as nn-scratch wrote it before checksums (format version 1)."""
    outer, body = split(path)
    inner = json.loads(outer["__metadata__"][METADATA_KEY])
    del inner[CHECKSUM_KEY]
    inner["format_version"] = 1
    outer["__metadata__"][METADATA_KEY] = json.dumps(inner)
    return join(path, outer, body)


def edit_header(path, change, *, sign=True):
    """Rewrite the nn-scratch header through `change(dict)`; re-sign it unless told not to."""
    outer, body = split(path)
    inner = json.loads(outer["__metadata__"][METADATA_KEY])
    change(inner)
    outer["__metadata__"][METADATA_KEY] = json.dumps(inner)  # allow_nan: NaN written as NaN
    join(path, outer, body)
    return resign(path) if sign else path


def assert_one_error_line(result, *fragments):
    """As assert_one_line_error, but stderr may first hold train's "training ..." line and
    its progress: the error comes once training has started, as the last line."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    [line] = [line for line in lines if line.startswith("nn-cli: ")]
    assert line == lines[-1] and line.startswith("nn-cli: error: "), lines
    assert all(f in line for f in fragments), line
    assert result.stdout == ""


def cli_predict(model, rows_path):
    return invoke("predict", model, "--input", rows_path)


def assert_refused(model, tmp_path, *fragments):
    """Loading raises a ModelFileError, and `predict` is one line, both naming `fragments`."""
    with pytest.raises(ModelFileError) as error:
        load_model(model)
    assert all(f in str(error.value) for f in fragments), error.value
    rows = tmp_path / "x.csv"
    rows.write_text("0.1,0.2\n")
    assert_one_line_error(cli_predict(model, rows), str(model), *fragments)


# -- 11.1 non-finite preprocessing statistics -------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_preprocessing_statistics_are_refused(saved, tmp_path, value):
    edit_header(saved, lambda h: h["preprocessing"]["standardize"]["mean"].__setitem__(0, value))
    assert_refused(saved, tmp_path, "finite")


def test_a_huge_integer_statistic_is_refused(saved):
    edit_header(saved, lambda h: h["preprocessing"]["standardize"]["std"].__setitem__(0, 10**400))
    with pytest.raises(ModelFileError, match="finite"):
        load_model(saved)


# -- 11.2 non-finite weights ------------------------------------------------------------


def nan_weights(path):
    tensors = load_file(path)
    tensors["modules.0.weight"][0, 0] = math.nan
    outer, _ = split(path)
    save_file(tensors, path, metadata=outer["__metadata__"])
    return resign(path)


def test_non_finite_weights_are_refused(saved, tmp_path):
    nan_weights(saved)
    assert_refused(saved, tmp_path, "modules.0.weight", "finite")


def test_resume_of_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    ckpt, model = tmp_path / "c.safetensors", tmp_path / "m.safetensors"
    result = invoke("train", *FAST, "--checkpoint", ckpt, "--checkpoint-every", "1")
    assert result.exit_code == 0, result.output
    nan_weights(ckpt)
    assert_one_line_error(invoke("train", "--resume", ckpt, "--save", model), "finite")
    assert not model.exists()


@pytest.mark.parametrize("change", [
    lambda t: t.pop("rng.shuffle"),
    lambda t: t.update({"rng.shuffle": t["rng.shuffle"].float()}),
    lambda t: t.update({"rng.init": t["rng.init"][:100]}),
])
def test_resume_of_a_checkpoint_with_a_bad_generator_state_is_refused_before_training(tmp_path,
                                                                                      change):
    """Refused when the file is read: not after train has said what it trains."""
    ckpt, model = tmp_path / "c.safetensors", tmp_path / "m.safetensors"
    result = invoke("train", *FAST, "--checkpoint", ckpt, "--checkpoint-every", "1")
    assert result.exit_code == 0, result.output
    edit_tensors(ckpt, change)
    result = invoke("train", "--resume", ckpt, "--save", model)
    assert_one_line_error(result, "generator state 'rng.")
    assert result.stdout == "" and not model.exists()


# -- 11.3 a finite input never gives a NaN score -----------------------------------------


@pytest.mark.parametrize("row", ["3e38,3e38", "1e39,0.5", "-1e39,0.5"])
def test_rows_that_overflow_the_models_dtype_are_refused_with_their_line(saved, tmp_path, row):
    rows = tmp_path / "x.csv"
    rows.write_text(f"x,y\n0.1,0.2\n\n{row}\n")
    result = cli_predict(saved, rows)
    assert_one_line_error(result, f"{rows}: line 4", "float32")
    assert "nan" not in result.output


def test_evaluate_refuses_an_overflowing_row(saved, tmp_path):
    rows = tmp_path / "x.csv"
    rows.write_text("x,y,label\n0.1,0.2,1\n3e38,3e38,0\n")
    assert_one_line_error(invoke("evaluate", saved, "--input", rows), f"{rows}: line 3")


# -- 11.4 checksums ---------------------------------------------------------------------


def test_the_file_records_a_checksum(saved):
    outer, _ = split(saved)
    recorded = json.loads(outer["__metadata__"][METADATA_KEY])[CHECKSUM_KEY]
    assert recorded.startswith("sha256:") and len(recorded) == 7 + 64


def test_the_same_run_writes_the_same_bytes(tmp_path, trained):
    first = save_model(tmp_path / "a.safetensors", trained).read_bytes()
    assert save_model(tmp_path / "b.safetensors", trained).read_bytes() == first


@pytest.mark.parametrize("offset", [0, 7, 50, -1])
def test_a_flipped_byte_in_the_tensor_data_is_refused(saved, tmp_path, offset):
    outer, body = split(saved)
    body = bytearray(body)
    body[offset] ^= 0x01  # a one-bit change in a weight: still a finite number
    join(saved, outer, bytes(body))
    assert_refused(saved, tmp_path, "checksum")


def test_an_edited_header_value_is_refused(saved):
    edit_header(saved, lambda h: h["preprocessing"]["standardize"]["mean"].__setitem__(0, 0.123),
                sign=False)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)


def test_a_file_written_before_checksums_loads_with_one_note(saved, tmp_path, trained):
    unsign(saved)
    x = torch.rand(5, 2, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="no checksum"):
        assert torch.equal(load_model(saved).predict(x).scores, load_model_scores(trained, x))
    rows = tmp_path / "x.csv"
    rows.write_text("0.1,0.2\n0.3,0.4\n")
    result = cli_predict(saved, rows)
    assert result.exit_code == 0, result.output
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("nn-cli: note: ") and str(saved) in notes[0]


def load_model_scores(trained, x):
    from core.data import preprocess

    return trained.model.forward(preprocess.apply(trained.preprocessing, x))


# -- 11.5 a second run writing the same file --------------------------------------------


def test_a_second_run_with_the_same_save_is_refused_and_leaves_the_live_files(tmp_path):
    model = tmp_path / "m.safetensors"
    live_temp = tmp_path / ".m.safetensors.abcd_123.tmp"
    with write_lock(model):  # the first run, alive, its write in progress
        live_temp.write_bytes(b"half")
        result = invoke("train", *FAST, "--save", model)
        assert_one_line_error(result, str(model), "another")
    assert live_temp.exists() and not model.exists()


def test_a_second_run_with_the_same_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "c.safetensors"
    with write_lock(ckpt):
        result = invoke("train", *FAST, "--checkpoint", ckpt, "--checkpoint-every", "1")
    assert_one_error_line(result, str(ckpt), "another")
    assert not ckpt.exists()


def test_predict_refuses_an_output_another_process_writes(saved, tmp_path):
    rows, out = tmp_path / "x.csv", tmp_path / "p.csv"
    rows.write_text("0.1,0.2\n")
    with write_lock(out):
        assert_one_line_error(invoke("predict", saved, "--input", rows, "--output", out), "another")


# -- 11.8 temporaries of killed --save / --output writes ---------------------------------


def test_temporaries_of_a_killed_save_are_removed_by_the_next_run(tmp_path):
    model = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.safetensors.k1ll_3d0.tmp"
    stale.write_bytes(b"half a model")
    result = invoke("train", *FAST, "--save", model)
    assert result.exit_code == 0, result.output
    assert temp_files(model) == [] and model.exists()


def test_temporaries_of_a_killed_output_are_removed_by_the_next_predict(saved, tmp_path):
    rows, out = tmp_path / "x.csv", tmp_path / "p.csv"
    rows.write_text("0.1,0.2\n")
    stale = tmp_path / ".p.csv.k1ll_3d0.tmp"
    stale.write_bytes(b"score,cl")
    result = invoke("predict", saved, "--input", rows, "--output", out)
    assert result.exit_code == 0, result.output
    assert temp_files(out) == [] and out.exists()


# -- 11.6 memory -----------------------------------------------------------------------


def test_a_network_too_big_for_memory_is_refused_before_allocating(tmp_path):
    result = invoke("train", "--hidden", "100000,100000", "--epochs", "1")
    assert_one_line_error(result, "--hidden", "memory")


def test_many_runs_trained_together_count_each_network():
    result = invoke("train", "--hidden", "20000,20000", "--runs", "100", "--epochs", "1")
    assert_one_line_error(result, "--runs", "memory")


def test_layers_too_big_for_memory_are_refused_before_allocating():
    result = invoke("train", "--layers", "linear:out=200000,tanh,linear:out=200000,tanh,linear:out=1")
    assert_one_line_error(result, "--layers", "memory")


def test_an_image_network_too_big_for_memory_is_refused_before_allocating():
    """Counted on the meta build for the digits' 1x8x8 images (a conv's outputs per image)."""
    result = invoke("train", "--data", "digits", "--epochs", "1",
                    "--layers", "conv2d:out=100000,k=3,pad=1,relu,flatten,linear:out=10")
    assert_one_line_error(result, "needs about", "memory")


def test_evaluate_n_too_big_for_memory_is_refused(saved):
    assert_one_line_error(invoke("evaluate", saved, "--n", "100000000000"), "--n", "memory")


def test_a_checkpoint_claiming_huge_training_sets_is_refused(tmp_path):
    ckpt = tmp_path / "c.safetensors"
    assert invoke("train", *FAST, "--checkpoint", ckpt, "--checkpoint-every", "1").exit_code == 0
    edit_header(ckpt, lambda h: h["settings"].update(n_train=200_000_000_000, epochs=3))
    assert_one_line_error(invoke("train", "--resume", ckpt), "n_train", "memory")


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 40000000000 bytes. Error code 12"),
])
def test_an_allocation_failure_is_one_line_naming_what_to_lower(monkeypatch, error):
    import core.pipeline.train

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(core.pipeline.train, "fit", fail)
    assert_one_error_line(invoke("train", *FAST), "out of memory", "--hidden", "--batch-size")


def test_the_loader_checks_shapes_before_building_the_network(saved, monkeypatch):
    """A tiny file claiming 12000-wide layers is refused without building them."""
    def widen(h):
        h["architecture"][0]["args"] = {"out_features": 12000}
        h["architecture"][2]["args"] = {"out_features": 12000}
    edit_header(saved, widen)
    import core.files.model_file as mf

    built = []
    real = mf.build_flat_stack
    monkeypatch.setattr(mf, "build_flat_stack", lambda *a, **k: built.append(k) or real(*a, **k))
    with pytest.raises(ModelFileError, match="shape"):
        load_model(saved)
    assert all(k.get("device") == "meta" for k in built)


IMAGE_NET = "conv2d:out=4,k=3,pad=1,batchnorm,relu,maxpool2d:k=2,flatten,linear:out=10"


@pytest.fixture
def image_model(tmp_path):
    """A CNN with batchnorm on digits: its file holds running statistics (buffers)."""
    path = tmp_path / "cnn.safetensors"
    result = invoke("train", "--data", "digits", "--layers", IMAGE_NET, "--epochs", "1",
                    "--save", path)
    assert result.exit_code == 0, result.output
    return path


def edit_tensors(path, change):
    """Rewrite the file's tensors through `change(dict)`, re-signed: the header stays."""
    tensors = load_file(path)
    change(tensors)
    outer, _ = split(path)
    save_file(tensors, path, metadata=outer["__metadata__"])
    return resign(path)


@pytest.mark.parametrize("change, fragments", [
    (lambda t: t.pop("modules.1.running_mean"), ["missing tensor 'modules.1.running_mean'"]),
    (lambda t: t.update({"modules.1.running_var": torch.ones(5)}), ["'modules.1.running_var'", "[4]"]),
    (lambda t: t.update({"modules.1.running_var": t["modules.1.running_var"].double()}),
     ["'modules.1.running_var'", "float64"]),
    (lambda t: t.update({"modules.1.running_std": torch.ones(4)}), ["unexpected tensor"]),
])
def test_an_image_models_buffers_are_checked_before_building(image_model, monkeypatch, change,
                                                             fragments):
    """Running statistics are checked against the header like weights, on the meta build."""
    edit_tensors(image_model, change)
    import core.files.model_file as mf

    built = []
    real = mf.build_flat_stack
    monkeypatch.setattr(mf, "build_flat_stack", lambda *a, **k: built.append(k) or real(*a, **k))
    with pytest.raises(ModelFileError) as error:
        load_model(image_model)
    assert all(f in str(error.value) for f in fragments), error.value
    assert built == []  # refused before the real network was built


def test_an_image_models_running_statistics_load_as_saved(image_model):
    saved_tensors = load_file(image_model)
    buffers = load_model(image_model).model.buffers()
    assert set(buffers) == {"1.running_mean", "1.running_var"}
    for name, value in buffers.items():
        assert torch.equal(value, saved_tensors[f"modules.{name}"])
    assert not torch.equal(buffers["1.running_var"], torch.ones(4))  # they moved in training


# -- 11.7 input files -------------------------------------------------------------------


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_json_integer_too_big_for_a_float_is_refused(saved, tmp_path, digits):
    rows = tmp_path / "x.json"
    rows.write_text(f"[[0.1, 0.2],\n [{'9' * digits}, 0.5]]")
    assert_one_line_error(cli_predict(saved, rows), f"{rows}: line 2", "finite")


def test_a_csv_field_over_the_limit_is_refused(saved, tmp_path):
    rows = tmp_path / "x.csv"
    rows.write_text("0.1,0.2\n" + "1" * 200_000 + ",0.5\n")
    assert_one_line_error(cli_predict(saved, rows), f"{rows}: line 2", "131072")


def test_a_byte_order_mark_is_ignored(saved, tmp_path):
    with_header, bare = tmp_path / "a.csv", tmp_path / "b.csv"
    with_header.write_text("\ufeffx,y,label\n0.1,0.2,1\n", encoding="utf-8")
    bare.write_text("\ufeff0.1,0.2\n", encoding="utf-8")
    assert invoke("evaluate", saved, "--input", with_header).exit_code == 0
    assert invoke("predict", saved, "--input", bare).exit_code == 0


@pytest.mark.parametrize(
    "text, line",
    [
        ("x,y\n0.1,0.2\n\n0.3,oops\n", 4),  # blank line counted
        ("0.1,0.2\n\n\n0.3,0.4,0.5\n", 4),  # a row of the wrong width
        ('x,y\n"0.1\n",0.2\n0.3,abc\n', 4),  # a quoted field spanning two lines
    ],
)
def test_csv_errors_name_the_file_line(saved, tmp_path, text, line):
    rows = tmp_path / "x.csv"
    rows.write_text(text)
    assert_one_line_error(cli_predict(saved, rows), f"{rows}: line {line}")


def test_label_errors_name_the_file_line(saved, tmp_path):
    rows = tmp_path / "x.csv"
    rows.write_text("x,y,label\n\n0.1,0.2,1\n0.1,0.2,7\n")
    assert_one_line_error(invoke("evaluate", saved, "--input", rows), f"{rows}: line 4", "label")


def test_json_errors_name_the_file_line(saved, tmp_path):
    rows = tmp_path / "x.json"
    rows.write_text('[\n  [0.1, 0.2],\n\n  [0.3, "x"]\n]')
    assert_one_line_error(cli_predict(saved, rows), f"{rows}: line 4")
