"""Defaults for a small table (core/training/table_defaults.py): the rule as a pure
function, and the resolve step that applies it: explicit options win, the dataset's own
defaults win, the disk and images are untouched, and --json/the text say what was chosen."""

import json

import pytest
from typer.testing import CliRunner

from cli import app
from core import TrainSettings, default_registry
from core.pipeline.resolve import resolve
from core.training.table_defaults import L2, ROWS_PER_FEATURE, small_table_defaults


def fields(chosen):
    return {d.field: d.value for d in chosen}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_few_rows_per_feature_get_early_stopping_a_small_network_and_a_penalty(task):
    chosen = fields(small_table_defaults(task, rows=112, features=4))
    assert chosen == {"val_fraction": 0.15, "patience": 30, "epochs": 300, "hidden": (32,),
                      "l2": L2[task], "batch_size": 32, "lr": 0.01}
    assert L2["regression"] > L2["multiclass"]


@pytest.mark.parametrize(("rows", "features", "shape", "small"), [
    (ROWS_PER_FEATURE * 4 - 1, 4, (4,), True),  # just under the line
    (ROWS_PER_FEATURE * 4, 4, (4,), False),  # the line: enough rows per feature
    (750, 2, (2,), False),  # the synthetic 2-D sets
    (1347, 64, (1, 8, 8), False),  # images keep their own
    (20_000, 1000, (1000,), False),  # many rows, however wide
])
def test_the_rule_is_for_small_flat_tables_only(rows, features, shape, small):
    assert bool(small_table_defaults("multiclass", rows, features, shape)) is small
    assert small_table_defaults("sequence", rows, features, shape) == []  # tokens: no table


def test_every_default_says_why():
    for d in small_table_defaults("regression", 200, 10):
        assert d.why and d.to_dict()["field"] == d.field


def resolve_defaults(settings, registry, given):
    resolved = resolve(settings, registry, given)
    return resolved.settings, list(resolved.chosen)


def test_resolve_applies_them_where_neither_user_nor_dataset_set_them():
    registry = default_registry()
    settings, chosen = resolve_defaults(TrainSettings(data="diabetes", lr=0.5, seed=3), registry,
                                        {"data", "lr", "seed"})
    assert settings.lr == 0.5  # typed: wins
    assert settings.epochs == 50  # diabetes's own default wins over the rule's 300
    assert settings.val_fraction == 0.15 and settings.patience == 30 and settings.l2 == L2["regression"]
    assert {d.field for d in chosen} == {"val_fraction", "patience", "hidden", "l2", "batch_size"}
    assert "332 training rows of 10 features" in chosen[0].why


def test_val_fraction_zero_typed_turns_early_stopping_off():
    settings, chosen = resolve_defaults(TrainSettings(data="iris", val_fraction=0.0),
                                        default_registry(), {"data", "val_fraction"})
    assert settings.val_fraction == 0.0 and settings.patience is None
    assert "patience" not in {d.field for d in chosen}


@pytest.mark.parametrize(("data", "n_train"), [("disk", 1000), ("disk", 40), ("moons:n=100", 1000),
                                               ("digits", 1000)])
def test_the_disk_synthetic_sets_and_images_are_untouched(data, n_train):
    """Data drawn from the seed: even 40 or 100 points are no small table."""
    registry = default_registry()
    settings, chosen = resolve_defaults(TrainSettings(data=data, n_train=n_train), registry,
                                        {"data", "n_train"})
    assert chosen == [] and settings.val_fraction == 0.0 and settings.l2 == 0.0


def test_train_says_which_defaults_it_took_in_text_and_json():
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", "wine", "--epochs", "20", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {d["field"] for d in out["defaults"]} == {"val_fraction", "patience", "hidden", "l2",
                                                    "batch_size", "lr"}  # --epochs typed
    assert out["settings"]["epochs"] == 20 and out["settings"]["hidden"] == [32]
    assert out["best_epoch"] is not None
    assert "defaults for a small table" in result.stderr and "--l2 0.01" in result.stderr
    text = runner.invoke(app, ["train", "--data", "wine", "--epochs", "20", "--hidden", "8"])
    block = text.stderr.split("defaults for a small table")[1].split("\n  epoch")[0]
    assert "--l2 0.01" in block and "--hidden" not in block  # typed: not a default
    assert "kept the weights of epoch" in text.stdout
    disk = runner.invoke(app, ["train", "--epochs", "2", "--json"])
    assert "defaults" not in json.loads(disk.stdout)


def test_the_library_takes_the_same_defaults_as_the_cli():
    from core import train

    result = train(TrainSettings(data="wine", epochs=20))  # fields off their defaults: given
    assert result.settings.hidden == (32,) and result.settings.val_fraction == 0.15
    assert result.settings.epochs == 20
