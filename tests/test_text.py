"""Text data and a character-level GPT from the CLI: the datasets, training with bits per
character, model files, checkpoints, sampling, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core.data.text import Vocabulary, pydoc_text
from core.plugin.registry import default_registry

REGISTRY = default_registry()
TINY = ["--layers", "gpt:width=8,blocks=1,heads=2", "--epochs", "1", "--batch-size", "16"]
TEXT = "the cat sat on the mat. the dog sat on the log. " * 12


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("nn-cli: error: "), line
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_pydoc_corpus_is_the_python_reference_that_ships_with_cpython():
    text = pydoc_text()
    assert 400_000 < len(text) < 600_000 and len(Vocabulary.of(text)) > 90


def test_pydoc_dataset_is_windows_of_next_characters_with_a_held_out_tail():
    data = REGISTRY.create("dataset", "pydoc", context=16)
    assert data.task == "sequence" and data.input_shape == (16,)
    assert data.class_names == Vocabulary.of(pydoc_text()).tokens
    assert torch.equal(data.x_train[:, 1:], data.y_train[:, :-1])  # y: x shifted by one
    assert torch.equal(data.x_train[1, :8], data.x_train[0, 8:])  # windows every context/2
    text = pydoc_text()
    tail = Vocabulary.of(text).decode(data.x_test[0].long().tolist())
    assert text.index(tail) >= int(len(text) * 0.9)  # the test windows are the last 10%


def test_bytes_mode_takes_every_byte(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("naïve café " * 40, encoding="utf-8")
    data = REGISTRY.create("dataset", "text", path=str(path), context=8, bytes=True)
    assert len(data.class_names) == 256
    assert Vocabulary(data.class_names, bytes=True).decode(data.x_train[0].long().tolist()) == "naïve c"


def test_train_reports_bits_per_character_and_perplexity(corpus):
    result = invoke("train", "--data", f"text:path={corpus},context=8", *TINY, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    metrics = out["metrics"]
    assert out["task"] == "sequence" and out["settings"]["loss"] == "token_cross_entropy"
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss_per_token"] / math.log(2))
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss_per_token"]))
    text = invoke("train", "--data", f"text:path={corpus},context=8", *TINY)
    assert "bits per character" in text.stdout and "perplexity" in text.stdout


def test_save_info_generate_same_seed_same_text(corpus, tmp_path):
    model = tmp_path / "gpt.nn"
    assert invoke("train", "--data", f"text:path={corpus},context=8", *TINY, "--save", model).exit_code == 0
    info = invoke("info", model)
    assert "gpt:" in info.stdout and "attention" in info.stdout
    args = ["generate", model, "--prompt", "the ", "--tokens", 40, "--temperature", 0.8, "--top-k", 5]
    first, again = invoke(*args, "--seed", 3), invoke(*args, "--seed", 3)
    other = invoke(*args, "--seed", 4)
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout and first.stdout.startswith("the ")
    assert len(first.stdout) == len("the ") + 40 + 1 and set(first.stdout[:-1]) <= set(TEXT)
    assert other.stdout != first.stdout


def test_checkpoint_and_resume_end_where_the_uninterrupted_run_ends(corpus, tmp_path):
    data = ["--data", f"text:path={corpus},context=8", "--layers", "gpt:width=8,blocks=1,heads=2",
            "--batch-size", "16", "--json"]
    whole = json.loads(invoke("train", *data, "--epochs", 2).stdout)
    ckpt = tmp_path / "run.ckpt"
    first = invoke("train", *data, "--epochs", 2, "--checkpoint", ckpt, "--checkpoint-every", 1)
    assert first.exit_code == 0, first.output
    resumed = json.loads(invoke("train", "--resume", ckpt, "--json").stdout)
    assert resumed["losses"] == whole["losses"]


def test_runs_and_compare_train_text_models(corpus):
    data = ["--data", f"text:path={corpus},context=8", "--layers", "gpt:width=8,blocks=1,heads=2",
            "--epochs", "1", "--batch-size", "16"]
    runs = invoke("train", *data, "--runs", 2, "--json")
    assert runs.exit_code == 0, runs.output
    compared = invoke("compare", *data, "--lr", "0.003", "--lr", "0.01", "--json")
    assert compared.exit_code == 0, compared.output


@pytest.mark.parametrize("make,data,fragments", [
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "text:path={p}", ["looks binary"]),
    (lambda p: p.write_bytes(b""), "text:path={p}", ["is empty"]),
    (lambda p: p.write_bytes(b"caf\xe9 " * 50), "text:path={p}", ["is not UTF-8", "bytes=true"]),
    (lambda p: p.write_text("short text"), "text:path={p},context=64", ["too short for context 64"]),
    (lambda p: None, "text:path={p}", ["does not exist"]),
    (lambda p: p.write_text(TEXT), "text:path={p},context=0", ["context must be an integer >= 1"]),
])
def test_bad_text_is_one_line_exit_2(tmp_path, make, data, fragments):
    path = tmp_path / "data.txt"
    make(path)
    one_line_error(invoke("train", "--data", data.format(p=path), *TINY), *fragments)


def test_generate_refuses_what_it_cannot_do(corpus, tmp_path):
    model = tmp_path / "gpt.nn"
    invoke("train", "--data", f"text:path={corpus},context=8", *TINY, "--save", model)
    one_line_error(invoke("generate", model, "--prompt", "Zebra"), "character 'Z' is not in the model's vocabulary")
    one_line_error(invoke("generate", model, "--prompt", "the", "--top-k", 0), "top-k must be an integer >= 1")
    one_line_error(invoke("generate", model, "--prompt", "the", "--temperature", -1), "temperature must be")
    disk = tmp_path / "disk.nn"
    invoke("train", "--epochs", "1", "--save", disk)
    one_line_error(invoke("generate", disk, "--prompt", "the"), "not a text model")


def test_predict_names_the_next_character_and_evaluate_uses_the_held_out_text(corpus, tmp_path):
    model = tmp_path / "gpt.nn"
    invoke("train", "--data", f"text:path={corpus},context=8", *TINY, "--save", model)
    vocab = Vocabulary.of(TEXT)
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"t{i}" for i in range(8)) + "\n"
                    + ",".join(str(i) for i in vocab.encode("the cat ")) + "\n")
    predicted = invoke("predict", model, "--input", rows, "--format", "json")
    assert predicted.exit_code == 0, predicted.output
    (row,) = json.loads(predicted.stdout)
    assert row["class"] in vocab.tokens
    evaluated = invoke("evaluate", model, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert 0 <= json.loads(evaluated.stdout)["error"] <= 1
    one_line_error(invoke("evaluate", model, "--input", rows), "is a text model")
