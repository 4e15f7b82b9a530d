"""Images as data: the IDX reader, digits as 1x8x8 images, denoising, and the CLI around them."""

import gzip
import json

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core import DataError, TrainSettings, train, train_ensemble
from plugins.image_datasets import IDX_FILES, mnist, read_idx

CNN = "conv2d:out=4,k=3,pad=1,relu,maxpool2d:k=2,flatten,linear:out=10"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def idx_bytes(array: torch.Tensor) -> bytes:
    """An unsigned-byte IDX file: 0, 0, 0x08, rank, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + bytes(array.flatten().tolist())


def write_mnist(folder, n_train=30, n_test=10, size=6, gz=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    parts = {
        "x_train": torch.randint(0, 256, (n_train, size, size), generator=gen, dtype=torch.uint8),
        "y_train": torch.arange(n_train, dtype=torch.uint8) % 10,
        "x_test": torch.randint(0, 256, (n_test, size, size), generator=gen, dtype=torch.uint8),
        "y_test": torch.arange(n_test, dtype=torch.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = idx_bytes(parts[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_the_four_idx_files_raw_or_gzipped(tmp_path, gz):
    parts = write_mnist(tmp_path / "m", gz=gz)
    data = mnist(str(tmp_path / "m"))
    data.check()
    assert data.input_shape == (1, 6, 6) and data.task == "multiclass" and len(data.class_names) == 10
    assert torch.equal(data.x_train, parts["x_train"].reshape(30, 36).double() / 255)
    assert torch.equal(data.y_test, parts["y_test"].long())
    assert mnist(str(tmp_path / "m"), fashion=True).class_names[9] == "Ankle boot"
    assert len(mnist(str(tmp_path / "m"), limit=7).x_train) == 7


def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path):
    write_mnist(tmp_path / "m")
    path = tmp_path / "m" / IDX_FILES["x_train"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04not idx")
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        mnist(str(tmp_path / "m"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no train-images-idx3-ubyte"):
        mnist(str(tmp_path / "empty"))
    result = invoke("train", "--data", f"mnist:path={tmp_path / 'nowhere'}", "--epochs", "1")
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_a_cnn_trains_on_mnist_files_from_the_cli(tmp_path):
    write_mnist(tmp_path / "m", size=8, gz=True)
    result = invoke("train", "--data", f"mnist:path={tmp_path / 'm'}", "--layers", CNN,
                    "--epochs", "2", "--batch-size", "8", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dataset"]["input_shape"] == [1, 8, 8] and 0 <= out["test_error"] <= 1


def test_summary_prints_each_layers_output_shape_and_parameters_and_trains_nothing():
    result = invoke("train", "--data", "digits", "--layers",
                    "conv2d:out=16,k=3,pad=1,relu,maxpool2d:k=2,flatten,linear:out=10", "--summary")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "input" in lines[2] and "1x8x8" in lines[2]
    assert "16x8x8" in lines[3] and lines[3].endswith("160  im2col")  # 16 * 9 weights + 16 biases
    assert "16x4x4" in lines[5] and "256" in lines[6]
    assert lines[-1] == "total: 2,730 trainable parameters"  # 160 + 256 * 10 + 10
    as_json = json.loads(invoke("train", "--data", "digits", "--layers", CNN, "--summary",
                                "--json").stdout)
    assert as_json["input_shape"] == [1, 8, 8]
    assert [r["output_shape"] for r in as_json["layers"]] == [[4, 8, 8], [4, 8, 8], [4, 4, 4], [64], [10]]


def test_summary_shows_each_convolutions_algorithm_and_the_layers_that_take_images_batch_first():
    # Chosen once per layer when it is built: Winograd for a 3x3 kernel at stride 1 with
    # channels enough, im2col otherwise; layernorm declares no layout, so it is converted for.
    stack = ("conv2d:out=8,k=3,pad=1,relu,conv2d:out=8,k=3,pad=1,layernorm,conv2d:out=4,k=2x3,"
             "s=2,bias=false,flatten,linear:out=10")
    result = invoke("train", "--data", "digits", "--layers", stack, "--summary")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[3].endswith("im2col") and lines[5].endswith("winograd F(4x4,3x3)")
    assert lines[6].endswith("batch-first (converted)")
    assert "kernel_size=2x3" in lines[7] and "4x4x3" in lines[7] and lines[7].endswith("192  im2col")  # 8 * 4 * 2 * 3, no bias
    assert lines[-1].startswith("note: layernorm take(s) images batch-first")
    rows = json.loads(invoke("train", "--data", "digits", "--layers", stack, "--summary", "--json").stdout)
    assert [r["runs_as"] for r in rows["layers"]][:4] == ["im2col", "", "winograd F(4x4,3x3)",
                                                          "batch-first (converted)"]


def test_layers_take_rectangular_sizes_as_hxw_and_refuse_a_bad_one_in_one_line():
    ok = invoke("train", "--data", "digits", "--layers",
                "conv2d:out=4,k=2x3,s=1x2,bias=false,maxpool2d:k=2x1,flatten,linear:out=10",
                "--summary", "--json")
    assert ok.exit_code == 0, ok.output
    assert [r["output_shape"] for r in json.loads(ok.stdout)["layers"]][:2] == [[4, 7, 3], [4, 3, 3]]
    bad = invoke("train", "--data", "digits", "--layers", "conv2d:out=4,k=2x,flatten,linear:out=10")
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0
    assert "kernel_size must be an integer >= 1 or a pair of them" in bad.output and "'2x'" in bad.output


def test_an_impossible_stack_on_images_is_one_line_and_exit_2():
    result = invoke("train", "--data", "digits", "--layers",
                    "conv2d:out=4,k=3,maxpool2d:k=2,conv2d:out=4,k=5,flatten,linear:out=10")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "layers item 3 (conv2d) cannot take input 4x3x3" in result.output


def test_info_on_a_saved_model_prints_its_layer_table(tmp_path):
    path = tmp_path / "cnn.safetensors"
    saved = invoke("train", "--data", "digits", "--layers", CNN, "--epochs", "1", "--save", path)
    assert saved.exit_code == 0, saved.output
    result = invoke("info", path)
    assert result.exit_code == 0, result.output
    assert "trained on digits" in result.stdout and "4x4x4" in result.stdout
    predicted = invoke("predict", path, "--input", write_rows(tmp_path))
    assert predicted.exit_code == 0, predicted.output


def write_rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(",".join(["0"] * 30 + ["16"] * 4 + ["0"] * 30) for _ in range(3)) + "\n")
    return path


def test_an_mlp_on_digits_still_sees_flat_rows():
    settings = TrainSettings(data="digits", hidden=(16,), act="relu", epochs=1, loss="cross_entropy")
    assert train(settings).model.input_shape is None


def test_denoising_trains_the_course_network_and_reports_psnr():
    result = invoke("train", "--data", "denoise:noise=0.4", "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["settings"]["layers"].startswith("conv2d:out=32,k=3,stride=2")
    assert out["settings"]["preprocess"] == "none"
    assert out["metrics"]["psnr"] > 10  # dB; the noisy inputs themselves are far below 20


def test_an_image_ensemble_gives_each_seed_its_own_run():
    settings = TrainSettings(data="digits", layers=CNN + ",dropout:p=0.2", epochs=2, dtype="float64",
                             loss="cross_entropy", batch_size=64, lr=0.003)
    together = train_ensemble(settings, [0, 1])
    for seed, result in zip([0, 1], together):
        alone = train(TrainSettings(**{**settings.__dict__, "seed": seed}))
        torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(alone.losses),
                                   rtol=1e-10, atol=0)
