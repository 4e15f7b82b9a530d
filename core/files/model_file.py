"""Model files: a trained network in one safetensors file that rebuilds it by registered names.

Tensors: the weights, named "modules.{i}.{Parameter.name}" (module i of the Sequential),
and each module's non-trainable state (its optional `buffers()`, e.g. batchnorm's
running statistics), named "modules.{i}.{buffer name}".
Metadata: safetensors allows str -> str only, so one entry, "nn_scratch", holds JSON:

    format             "nn-scratch"
    format_version     the layout's version (core/files/versions.py: what each changed);
                       an older file is migrated on load, a newer one refused
    kind               "model" or "checkpoint" (a checkpoint is a model plus training state)
    framework_version  version of the nn-scratch distribution that wrote it
    in_features        input width of the first module
    dtype              "float32" or "float64"
    architecture       [LayerSpec.to_dict(), ...], rebuilt with core.network.assemble.build_flat_stack
    init               the initializer build_stack needs (its draws are then overwritten)
    loss               loss name; its decision_threshold turns a score into a class
    settings           TrainSettings.to_dict() of the run
    preprocessing      {} or {"standardize": {"mean": [...], "std": [...]}}, applied to
                       inputs before the network (see `core.data.preprocess.apply`)
    components         [{kind, name, plugin, distribution, version}]: what loading needs
    dataset            what the data were (core.Dataset.metadata()): name, task, feature,
                       class and target names, one sample's input_shape, one_hot

    checksum           "sha256:" + the SHA-256 of the rest of this JSON and of every tensor's
                       name, dtype, shape and bytes (see `checksum`); loading recomputes it,
                       so a flipped bit anywhere that matters is refused rather than silently
                       changing predictions. Version-1 files written before it existed still
                       load, with a note that they cannot be verified.

Loading reads the bytes once, parses them with safetensors (never pickle) and the header
with json, maps every tensor to the CPU, verifies the checksum, refuses non-finite numbers,
migrates an older layout to today's (core/files/versions.py), and checks names, shapes and
dtypes exactly: against a shapes-only build of the network first, so a small file claiming
huge layers costs no memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from core.data import preprocess
from core.network.assemble import LayerSpec, build_flat_stack, components, shapes_only
from core.files.atomic import atomic_write_bytes
from core.files.versions import CHECKSUM_KEY, CHECKSUM_REQUIRED_FROM, FORMAT_VERSION, LAYOUT, migrate
from core.training.settings import DTYPES
from core.errors import ModelFileError, NNError, RowError, UnverifiedFileWarning
from core.network.protocols import Loss, buffers, decision_threshold, set_training
from core.plugin.registry import Registry, default_registry
from core.network.sequential import Sequential
from core.training.evaluate import forward_in_slices, slice_rows
from core.training.settings import TrainSettings

if TYPE_CHECKING:
    from core.training.result import TrainResult

FORMAT = "nn-scratch"
METADATA_KEY = "nn_scratch"
DISTRIBUTION = "nn-scratch"
HEADER_LIMIT = 100_000_000  # safetensors' own cap on the JSON header


# -- provenance ------------------------------------------------------------------------


def framework_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        return "0+unknown"


@functools.cache
def _distributions_of_top_level() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def plugin_provenance(plugin: str) -> tuple[str | None, str | None]:
    """(distribution, version) that provides the plugin module `plugin`, when one does."""
    dists = _distributions_of_top_level().get(plugin.partition(".")[0])
    if dists:
        return dists[0], importlib.metadata.version(dists[0])
    # An editable install lists no top-level packages: a plugin module that lives in this
    # framework's own plugins/ folder ships with it.
    module_file = getattr(sys.modules.get(plugin), "__file__", None)
    builtin_plugins = Path(__file__).resolve().parents[2] / "plugins"
    if module_file and Path(module_file).resolve().is_relative_to(builtin_plugins):
        return DISTRIBUTION, framework_version()
    return None, None


def component_records(registry: Registry, needed: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Who provides each (kind, name) in `needed`, with versions, for the file's header."""
    records, seen = [], set()
    for kind, name in needed:
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        entry = registry.get(kind, name)
        distribution, version = plugin_provenance(entry.plugin)
        records.append({"kind": kind, "name": name, "plugin": entry.plugin,
                        "distribution": distribution, "version": version})
    return records


# -- encoding --------------------------------------------------------------------------


def parameter_names(model: Sequential) -> list[tuple[str, Any]]:
    """("modules.{i}.{name}", Parameter) for every parameter, in order.

    A module whose parameters lack distinct names gets them numbered instead.
    """
    named = []
    for i, module in enumerate(model.modules):
        params = module.parameters()
        names = [p.name for p in params]
        if len(set(names)) != len(names) or not all(names):
            names = [str(j) for j in range(len(params))]
        named += [(f"modules.{i}.{name}", p) for name, p in zip(names, params)]
    return named


def model_state(model: Sequential) -> list[tuple[str, torch.Tensor]]:
    """Every tensor a file holds for `model`, by name: its parameters, then its buffers."""
    named = [(name, p.value) for name, p in parameter_names(model)]
    for i, module in enumerate(model.modules):
        named += [(f"modules.{i}.{name}", t) for name, t in buffers(module).items()]
    return named


def model_tensors(model: Sequential) -> dict[str, torch.Tensor]:
    # On the CPU and contiguous, as safetensors needs; a CUDA model saves the same bytes.
    return {name: t.cpu().contiguous() for name, t in model_state(model)}


def model_header(
    *,
    specs: list[LayerSpec],
    settings: TrainSettings,
    in_features: int,
    registry: Registry,
    preprocessing: dict[str, Any] | None = None,
    kind: str = "model",
    dataset: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON header describing a network built from `specs` by a run with `settings` on
    the data `dataset` describes (core.Dataset.metadata())."""
    if not isinstance(dataset, dict):
        raise ModelFileError("a model file records the data it was trained on: give the "
                             "run's dataset metadata (core.Dataset.metadata())")
    needed = components(specs)
    needed += [("loss", settings.loss), ("initializer", settings.init)]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "framework_version": framework_version(),
        "in_features": in_features,
        "dtype": settings.dtype,
        "architecture": [s.to_dict() for s in specs],
        "init": settings.init,
        "loss": settings.loss,
        "settings": settings.to_dict(),
        "preprocessing": preprocessing or {},
        "components": component_records(registry, needed),
        "dataset": dataset,
    }


def checksum(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the header (without its checksum) and of each tensor's name, dtype, shape
    and bytes, as "sha256:<hex>"."""
    rest = {k: v for k, v in header.items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256(json.dumps(rest).encode("utf-8"))  # key order kept: as written
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode("utf-8"))
        digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return f"sha256:{digest.hexdigest()}"


def encode(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    # One metadata entry: safetensors writes several in no fixed order, and the same run
    # must give the same bytes.
    header = {**header, CHECKSUM_KEY: checksum(header, tensors)}
    return save(tensors, metadata={METADATA_KEY: json.dumps(header, allow_nan=False)})


def save_model(
    path: str | os.PathLike, result: TrainResult, *, registry: Registry | None = None
) -> Path:
    """Write the network of a `TrainResult` to `path` (safetensors), atomically.

    `registry` is the one the run used (default: the built-in one); it says which plugin
    provides each component. The result's `preprocessing` (a dict, when the run has one)
    is saved and applied again by `LoadedModel.predict`.
    """
    return atomic_write_bytes(path, model_file_bytes(result, registry=registry))


def model_file_bytes(result: TrainResult, *, registry: Registry | None = None) -> bytes:
    """The bytes `save_model` writes: for a file written elsewhere, or sent (the playground)."""
    registry = registry or default_registry()
    header = model_header(
        specs=result.specs, settings=result.settings, in_features=in_features_of(result),
        registry=registry, preprocessing=getattr(result, "preprocessing", None),
        dataset=getattr(result, "dataset", None),
    )
    return encode(model_tensors(result.model), header)


def in_features_of(result: TrainResult) -> int:
    """Input width: the data's feature count, else the first module's `in_features`
    (Linear's), else the disk task's 2."""
    dataset = getattr(result, "dataset", None)
    if dataset and dataset.get("feature_names"):
        return len(dataset["feature_names"])
    return int(getattr(result.model.modules[0], "in_features", 2))


# -- decoding --------------------------------------------------------------------------


@dataclass
class ModelFile:
    """A parsed, checked file: its JSON header and its tensors (on the CPU)."""

    path: str
    header: dict[str, Any]  # in today's layout (core/files/versions.py migrated it)
    tensors: dict[str, torch.Tensor]
    verified: bool = True  # False: written before checksums, so its bytes were not checked
    written_version: int = FORMAT_VERSION  # the format version the file was written in

    def note_if_unverified(self) -> None:
        """Once the file has loaded, say (as a warning) that its bytes could not be checked."""
        if not self.verified:
            warnings.warn(UnverifiedFileWarning(
                f"{self.path} has no checksum (written before nn-scratch recorded them): "
                f"its bytes are not verified; save it again to add one"
            ), stacklevel=3)

    def fail(self, reason: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {reason}")


def read_model_file(path: str | os.PathLike, *, kind: str | None = None) -> ModelFile:
    """Parse `path`: a safetensors file with an nn-scratch header of a known version.

    Every failure (missing, truncated, random bytes, a pickle, a foreign safetensors file,
    a newer format) is a ModelFileError naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    shown = str(path)
    try:
        data = Path(path).read_bytes()  # read once: a concurrent atomic replace cannot mix two files
    except OSError as e:
        raise ModelFileError(f"cannot read {shown!r}: {e.strerror or e}") from None
    try:
        tensors = load(data)  # parses with safetensors; never unpickles; tensors on the CPU
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        raise ModelFileError(
            f"{shown}: not a model file, or a truncated one (safetensors: {_first_line(e)})"
        ) from None
    # The JSON header follows an 8-byte little-endian length; safetensors just checked both.
    length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + min(length, HEADER_LIMIT)]).get("__metadata__") or {}
    if METADATA_KEY not in metadata:
        raise ModelFileError(
            f"{shown}: a safetensors file, but not an nn-scratch model (no {METADATA_KEY!r} metadata)"
        )
    try:
        header = json.loads(metadata[METADATA_KEY])
    except (json.JSONDecodeError, ValueError):  # ValueError: an integer of > 4300 digits
        raise ModelFileError(f"{shown}: the {METADATA_KEY!r} metadata is not valid JSON") from None
    file = ModelFile(shown, header, tensors)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise file.fail(f"not an nn-scratch model (format {_get(header, 'format')!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise file.fail(f"bad format_version {version!r}; expected an integer >= 1")
    if version > FORMAT_VERSION:
        raise file.fail(
            f"format version {version} was written by nn-scratch "
            f"{header.get('framework_version', '?')}; this nn-scratch ({framework_version()}) "
            f"reads format versions up to {FORMAT_VERSION}: upgrade nn-scratch"
        )
    verified = verify_checksum(shown, header, tensors)
    if not verified and version >= CHECKSUM_REQUIRED_FROM:
        raise file.fail(f"no checksum, which every file of format version {version} has: "
                        f"the header was edited; use the original file or train again")
    check_finite(file)
    header, tensors = migrate(header, tensors)  # today's layout from here on
    file = ModelFile(shown, header, tensors, verified, version)
    if kind is not None and header.get("kind") != kind:
        raise file.fail(f"is a {header.get('kind')!r} file; expected a {kind!r} file")
    _check_header(file)
    return file


def verify_checksum(shown: str, header: Any, tensors: dict[str, torch.Tensor]) -> bool:
    """The recorded checksum matches the header and tensors; False for a file without one."""
    if not isinstance(header, dict) or CHECKSUM_KEY not in header:
        return False
    if header[CHECKSUM_KEY] != checksum(header, tensors):
        raise ModelFileError(
            f"{shown}: checksum mismatch: the file changed after it was written (a corrupted "
            f"copy or an edit); use the original file or train again"
        )
    return True


def check_finite(file: ModelFile) -> None:
    """Every floating-point tensor holds finite numbers only: NaN weights are not a model."""
    for name, tensor in sorted(file.tensors.items()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise file.fail(f"tensor {name!r} holds NaN or infinite values; a model's numbers "
                            f"are finite")


def _check_header(file: ModelFile) -> None:
    h = file.header
    expected_types = {
        "kind": str, "in_features": int, "dtype": str, "architecture": list, "init": str,
        "loss": str, "settings": dict, "preprocessing": dict, "components": list, "dataset": dict,
    }
    for key, kind in expected_types.items():
        if not isinstance(h.get(key), kind):
            raise file.fail(f"header field {key!r} missing or not a {kind.__name__}")
    check_dataset(h["dataset"], h["in_features"], file)
    if h["dtype"] not in DTYPES:
        raise file.fail(f"dtype {h['dtype']!r} unknown; accepted: {', '.join(DTYPES)}")
    for spec in h["architecture"]:
        if not (isinstance(spec, dict) and isinstance(spec.get("kind"), str)
                and isinstance(spec.get("name"), str) and isinstance(spec.get("args", {}), dict)):
            raise file.fail(f"architecture entry {spec!r} is not {{kind, name, args}}")
    check_preprocessing(h["preprocessing"], file)


def check_dataset(dataset: dict[str, Any], in_features: int, file: ModelFile) -> None:
    """The dataset entry has its fields, typed, and its input shape holds in_features numbers."""
    expected_types = {"name": str, "task": str, "feature_names": list, "input_shape": list,
                      "class_names": list, "target_names": list, "one_hot": bool}
    assert list(expected_types) == LAYOUT["dataset"]  # one list of the entry's fields
    for key, kind in expected_types.items():
        if not isinstance(dataset.get(key), kind):
            raise file.fail(f"dataset field {key!r} missing or not a {kind.__name__}")
    shape = dataset["input_shape"]
    if not (shape and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
            and math.prod(shape) == in_features):
        raise file.fail(f"dataset input_shape {shape!r} does not hold in_features "
                        f"{in_features} numbers")


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_components(file: ModelFile, registry: Registry, extra: list[tuple[str, str]] = ()) -> None:
    """Every component the file needs is registered, or an error naming it and its plugin."""
    h = file.header
    provided = {(c.get("kind"), c.get("name")): c for c in h["components"] if isinstance(c, dict)}
    needed = components([LayerSpec.from_dict(s) for s in h["architecture"]])
    needed += [("loss", h["loss"]), ("initializer", h["init"]), *extra]
    loaded_plugins = {e.plugin for e in registry.entries()}
    for kind, name in needed:
        try:
            registry.get(kind, name)
            continue
        except NNError:
            pass
        record = provided.get((kind, name), {})
        plugin = record.get("plugin")
        if plugin is None:
            raise file.fail(f"needs {kind} {name!r}, which no installed plugin registers")
        version = f" {record['version']}" if record.get("version") else ""
        distribution = record.get("distribution")
        source = f" (distribution {distribution}{version})" if distribution else ""
        if plugin in loaded_plugins:
            raise file.fail(
                f"needs {kind} {name!r} from plugin {plugin!r}{source}; that plugin is "
                f"installed but registers no {kind} {name!r} (see `nn-cli list {kind}`)"
            )
        raise file.fail(
            f"needs {kind} {name!r} from plugin {plugin!r}{source}, which is not installed"
        )


def input_shape(header: dict[str, Any]) -> int | tuple[int, ...]:
    """The width of an input row, or one sample's shape when the data's has several
    dimensions (images); the network then reshapes each row to it."""
    shape = header["dataset"]["input_shape"]  # checked: its product is in_features
    return tuple(shape) if len(shape) > 1 else header["in_features"]


def rebuild(file: ModelFile, registry: Registry) -> Sequential:
    """The network the file describes, with its saved weights (names and shapes checked)."""
    h = file.header
    check_components(file, registry)
    specs = [LayerSpec.from_dict(s) for s in h["architecture"]]
    shape, dtype = input_shape(h), DTYPES[h["dtype"]]
    shapes = shapes_only(registry, specs, shape, dtype)
    if shapes is not None:  # the header against the tensors, before allocating anything
        check_tensors(file, shapes)
    try:
        model = build_flat_stack(
            registry, specs, shape, init=h["init"],
            generator=torch.Generator().manual_seed(0), dtype=dtype,
        )
    except (NNError, TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as e:
        raise file.fail(f"cannot rebuild the architecture: {_first_line(e)}") from None
    load_weights(file, model)
    return model


def load_weights(file: ModelFile, model: Sequential) -> None:
    """Overwrite the model's parameters and buffers with the file's "modules.*" tensors, exactly."""
    for name, value in check_tensors(file, model).items():
        value.copy_(file.tensors[name])


def check_tensors(file: ModelFile, model: Sequential) -> dict[str, torch.Tensor]:
    """The file's "modules.*" tensors are the model's parameters and buffers (batchnorm's
    running statistics): names, shapes, dtypes.

    Returns the model's tensors by name. `model` may be a shapes-only (meta) build.
    """
    expected = dict(model_state(model))
    saved = {k: t for k, t in file.tensors.items() if k.startswith("modules.")}
    for name in sorted(saved.keys() - expected.keys()):
        raise file.fail(f"unexpected tensor {name!r}; the architecture has {', '.join(expected)}")
    for name, value in expected.items():
        if name not in saved:
            raise file.fail(f"missing tensor {name!r} of shape {list(value.shape)}")
        tensor = saved[name]
        if tensor.shape != value.shape:
            raise file.fail(
                f"tensor {name!r} has shape {list(tensor.shape)}; "
                f"the architecture needs {list(value.shape)}"
            )
        if tensor.dtype != value.dtype:
            raise file.fail(f"tensor {name!r} is {tensor.dtype}; the model is {value.dtype}")
    return expected


def settings_from_dict(d: dict[str, Any], *, strict: bool, file: ModelFile) -> TrainSettings:
    """TrainSettings from a header; fields this version lacks fail if `strict`, else drop."""
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(d.keys() - known)
    if unknown and strict:
        raise file.fail(f"settings {', '.join(unknown)} unknown to this nn-scratch")
    values = {k: v for k, v in d.items() if k in known}
    if isinstance(values.get("hidden"), list):
        values["hidden"] = tuple(values["hidden"])
    try:
        return TrainSettings(**values)
    except (NNError, TypeError) as e:
        raise file.fail(f"bad settings: {_first_line(e)}") from None


# -- preprocessing ---------------------------------------------------------------------

def check_preprocessing(preprocessing: dict[str, Any], file: ModelFile) -> None:
    for step, args in preprocessing.items():
        if step not in preprocess.STEPS:
            raise file.fail(
                f"unknown preprocessing step {step!r}; this nn-scratch knows "
                f"{', '.join(preprocess.STEPS)}"
            )
        if step == "standardize":
            ok = isinstance(args, dict) and all(
                isinstance(args.get(k), list) and len(args[k]) == file.header["in_features"]
                and all(_is_finite(v) for v in args[k]) for k in ("mean", "std")
            )
            if not ok or not all(v > 0 for v in args["std"]):
                raise file.fail("preprocessing 'standardize' needs mean and std lists "
                                "of in_features finite numbers, std > 0")
        if step == "target":
            ok = isinstance(args, dict) and all(
                isinstance(args.get(k), list) and args[k]
                and all(_is_finite(v) for v in args[k]) for k in ("mean", "std")
            )
            if not ok or not all(v > 0 for v in args["std"]):
                raise file.fail("preprocessing 'target' needs mean and std lists of finite "
                                "numbers, std > 0")


def _is_finite(value: Any) -> bool:
    """A JSON number that is a finite float (NaN, Infinity and 400-digit integers are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# -- the loaded model ------------------------------------------------------------------


class Prediction(NamedTuple):
    # (n, outputs): the network's raw output (regression: in the target's units)
    scores: torch.Tensor
    # (n, 1) class indices (a one-output network: 1 where the score is above the loss's
    # threshold; one output per class: the largest); None for regression
    classes: torch.Tensor | None


@dataclass
class LoadedModel:
    """A network read back from a model file, ready to predict on the CPU."""

    model: Sequential = field(repr=False)
    loss: Loss = field(repr=False)  # decides the class through its decision_threshold
    settings: TrainSettings  # the run that trained it
    header: dict[str, Any] = field(repr=False)  # everything the file's metadata holds
    path: str = ""

    @property
    def in_features(self) -> int:
        return self.header["in_features"]

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.header["dtype"]]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.header["preprocessing"]

    @property
    def dataset(self) -> dict[str, Any]:
        """The training data's metadata: task, feature and class names, input shape."""
        return self.header["dataset"]

    @property
    def task(self) -> str:
        return self.dataset["task"]

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    def check_inputs(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ModelFileError(
                f"inputs have shape {list(x.shape)}; the model takes rows of "
                f"{self.in_features} features"
            )
        return x.to(self.dtype)

    def predict(self, x: torch.Tensor) -> Prediction:
        """Scores and classes for the rows of `x`, shape (n, in_features).

        A row whose numbers stop being finite on the way (a value beyond the model's dtype,
        a standardised value or a score that overflows it) is a RowError naming it: a
        finite input never gets a NaN or infinite score.
        """
        dtype = self.header["dtype"]
        x = self.check_inputs(x)
        _refuse_non_finite(x, f"a value does not fit in {dtype}, the model's precision "
                              f"(largest {torch.finfo(self.dtype).max:.4g})")
        x = preprocess.apply(self.preprocessing, x)
        _refuse_non_finite(x, f"the standardised inputs overflow {dtype}, the model's precision")
        with torch.set_grad_enabled(False):
            scores = forward_in_slices(self.model, x, slice_rows(self.task))  # (n, outputs)
        _refuse_non_finite(scores, f"the score is not finite: the inputs are too large for "
                                   f"the model in {dtype}")
        if self.task == "regression":
            return Prediction(preprocess.target_output(self.preprocessing, scores), None)
        if self.task == "sequence":  # a row of token ids: the token after it, by its logits
            last = scores[:, -1]  # (n, vocab)
            return Prediction(last, last.argmax(dim=-1, keepdim=True))
        if self.dataset["one_hot"]:
            return Prediction(scores, scores.argmax(dim=-1, keepdim=True))  # (n, 1)
        return Prediction(scores, (scores > decision_threshold(self.loss)).long())

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(n, classes): one probability per class, by the loss's `probabilities`."""
        to_probabilities = getattr(self.loss, "probabilities", None)
        if self.task == "regression" or to_probabilities is None:
            raise ModelFileError(
                f"{self.path}: a {self.task} model trained with loss {self.header['loss']!r} "
                f"gives no class probabilities"
            )
        return to_probabilities(self.predict(x).scores)

    def error_rate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of rows whose predicted class differs from the label `y` (class indices,
        (n,) or (n, 1)); for regression, the RMSE against the targets `y` (n, targets); for
        a text model, the fraction of positions whose likeliest next token is not `y`'s."""
        if self.task == "sequence":  # y (n, time): the next token at every position
            with torch.set_grad_enabled(False):
                logits = forward_in_slices(self.model, self.check_inputs(x), slice_rows(self.task))
            return (logits.argmax(dim=-1) != y.long()).double().mean().item()
        prediction = self.predict(x)
        if prediction.classes is None:
            return (prediction.scores - y.reshape(prediction.scores.shape).double()).pow(2).mean().sqrt().item()
        classes = prediction.classes  # (n, 1)
        return (classes != (y.reshape(classes.shape) + 0.5).long()).double().mean().item()


def _refuse_non_finite(x: torch.Tensor, reason: str) -> None:
    """A RowError for the first row of `x` (n, k) holding a NaN or an infinity."""
    bad = (~torch.isfinite(x)).any(dim=-1).nonzero()  # (rows, 1)
    if len(bad):
        raise RowError(int(bad[0, 0]), reason)


def load_model(path: str | os.PathLike, registry: Registry | None = None) -> LoadedModel:
    """Read a model (or checkpoint) file and rebuild its network by registered names.

    Never unpickles: the weights are parsed by safetensors, the rest is JSON. Every problem
    with the file is a ModelFileError naming it; a component that no registered plugin
    provides is named with the plugin (and version) that the file says provided it.
    """
    registry = registry or default_registry()
    file = read_model_file(path)
    if file.header["kind"] not in ("model", "checkpoint"):
        raise file.fail(f"unknown kind {file.header['kind']!r}; expected 'model' or 'checkpoint'")
    model = rebuild(file, registry)
    set_training(model, False)  # predictions and errors: dropout off, running statistics
    if file.header["kind"] == "model":
        extra = sorted(k for k in file.tensors if not k.startswith("modules."))
        if extra:
            raise file.fail(f"unexpected tensor {extra[0]!r} in a model file")
    settings = settings_from_dict(file.header["settings"], strict=False, file=file)
    loss = registry.create("loss", file.header["loss"])
    file.note_if_unverified()
    return LoadedModel(model, loss, settings, file.header, file.path)
