"""Fault injection: corrupted model files, hostile input files, and training killed at random.

    python bench/fault_injection.py [--kills 10] [--seed 0] [--quick]

Three groups of cases, each judged by what the user sees:
  model files  a model file corrupted in one of many ways (truncated, bytes flipped in the
               header and in the tensor data, shapes, dtypes, names, versions and values
               edited, empty, a directory, a pickle, a foreign safetensors file, ...) given
               to `nn-cli predict`, and checkpoints given to `nn-cli train --resume`:
               handled cleanly = exit status 2, one line on stderr, nothing on stdout.
  input files  hostile CSV and JSON files given to `nn-cli predict` and `nn-cli evaluate`:
               handled cleanly = either exit 2 with one line on stderr, or exit 0 with
               every score finite (never a NaN or an infinity written); a file with a
               value the model cannot take (beyond float32, not finite, not a number) or a
               bad label must be refused (MUST_REFUSE).
  kills        a checkpointing `nn-cli train` killed with SIGKILL at a random moment, then
               resumed until it ends: handled cleanly = the saved model is bit-identical to
               the uninterrupted run's, and no temporary file is left. While the first two
               are alive, a second run with the same --save and checkpoint is started:
               handled cleanly = refused in one line, exit 2, the first run unharmed.
It prints a table of cases tried, handled cleanly, and failures (each failure named), and
exits 1 if any case failed. The model-file and input-file cases run in this process
through typer's CliRunner, under an address-space limit (4 GB), so a runaway allocation is
an error rather than a swapping machine; the kills run `python -m cli` as real processes.
`--quick` runs every fourth model and input case and no kill (tests/test_fault_injection.py
runs that in the test suite).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import load, save  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cli import app  # noqa: E402
from core import TrainSettings, train  # noqa: E402
from core.files.atomic import temp_files  # noqa: E402
from core.files.model_file import CHECKSUM_KEY, METADATA_KEY, checksum, save_model  # noqa: E402
from core.files.versions import FORMAT_VERSION  # noqa: E402

MEMORY_LIMIT = 4 * 2**30  # bytes of address space for the in-process cases
SETTINGS = TrainSettings(hidden=(6, 5), epochs=2, seed=4, n_train=200, n_test=100)
KILL_EPOCHS = 40
KILL_ARGS = ["--hidden", "8,8", "--epochs", str(KILL_EPOCHS), "--batch-size", "20", "--seed", "1"]


@dataclass
class Outcome:
    group: str
    name: str
    ok: bool
    why: str = ""


# -- the model file, taken apart and put back together ---------------------------------


def split(data: bytes) -> tuple[dict, bytes]:
    """(safetensors' JSON header, the tensor data) of a file's bytes."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(outer: dict, body: bytes) -> bytes:
    text = json.dumps(outer).encode()
    return struct.pack("<Q", len(text)) + text + body


def edited(data: bytes, change: Callable[[dict], None], *, sign: str = "drop") -> bytes:
    """The file with its nn-scratch header passed through `change`.

    sign: "drop" removes the checksum (a file from before checksums, format version 1, so
    the check under test is the one that must refuse it), "keep" leaves the now stale one,
    "redo" records a fresh one (as a bug that wrote a bad file would).
    """
    outer, body = split(data)
    inner = json.loads(outer["__metadata__"][METADATA_KEY])
    change(inner)
    if sign == "drop":
        inner.pop(CHECKSUM_KEY, None)
        if inner.get("format_version") == FORMAT_VERSION:  # files had checksums from version 2
            inner["format_version"] = 1
    elif sign == "redo":
        inner[CHECKSUM_KEY] = checksum(inner, load(data))
    outer["__metadata__"][METADATA_KEY] = json.dumps(inner)  # NaN stays NaN
    return join(outer, body)


def with_tensors(data: bytes, change: Callable[[dict], None], *, sign: str = "redo") -> bytes:
    """The file with its tensors passed through `change`, the header kept."""
    outer, _ = split(data)
    tensors = load(data)
    change(tensors)
    rebuilt = save(tensors, metadata=outer["__metadata__"])
    return edited(rebuilt, lambda h: None, sign=sign)


def flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x04
    return bytes(changed)


def set_in(path: list, value) -> Callable[[dict], None]:
    """A change setting header[path...] = value."""
    def change(h: dict) -> None:
        for key in path[:-1]:
            h = h[key]
        h[path[-1]] = value
    return change


def model_cases(good: bytes, rng: random.Random) -> dict[str, Callable[[Path], Path]]:
    """name -> a function writing the corrupted file into a folder and returning its path."""
    header_length = struct.unpack("<Q", good[:8])[0]
    data_start = 8 + header_length

    def bytes_case(make: Callable[[], bytes]) -> Callable[[Path], Path]:
        def write(folder: Path) -> Path:
            path = folder / "model.safetensors"
            path.write_bytes(make())
            return path
        return write

    cases: dict[str, Callable[[Path], Path]] = {}
    add = lambda name, make: cases.__setitem__(name, bytes_case(make))  # noqa: E731

    add("empty file", lambda: b"")
    cases["a directory"] = lambda folder: (folder / "model.safetensors").mkdir() or folder / "model.safetensors"
    cases["missing file"] = lambda folder: folder / "absent.safetensors"
    add("a pickle (torch.save)", lambda: _torch_save({"modules.0.weight": torch.ones(2, 6)}))
    add("a pickle (pickle.dumps)", lambda: pickle.dumps({"weights": [1.0, 2.0]}))
    add("foreign safetensors, no metadata", lambda: save({"w": torch.ones(3)}))
    add("foreign safetensors, other metadata", lambda: save({"w": torch.ones(3)}, {"format": "pt"}))
    add("random bytes", lambda: bytes(rng.randrange(256) for _ in range(2000)))
    add("a text file", lambda: b"score,class\n0.5,1\n")
    add("header length 2**63", lambda: struct.pack("<Q", 2**63) + good[8:])
    add("header length 0", lambda: struct.pack("<Q", 0) + good[8:])
    add("header length past the end", lambda: struct.pack("<Q", len(good)) + good[8:])
    for cut in (4, 8, 9, data_start // 2, data_start - 1, data_start, data_start + 3,
                (data_start + len(good)) // 2, len(good) - 1):
        add(f"truncated to {cut} bytes", lambda cut=cut: good[:cut])
    add("appended garbage", lambda: good + b"\x00garbage")
    for offset in sorted(rng.sample(range(8, data_start), 10)):
        add(f"byte flipped in the header at {offset}", lambda o=offset: flip(good, o))
    for offset in sorted(rng.sample(range(data_start, len(good)), 10)):
        add(f"byte flipped in the tensor data at {offset}", lambda o=offset: flip(good, o))
    add("first weight's bit flipped", lambda: flip(good, data_start))
    add("last byte flipped", lambda: flip(good, len(good) - 1))

    edits = {
        "shape edited (out_features 7)": set_in(["architecture", 0, "args"], {"out_features": 7}),
        "shape edited (12000-wide layers)": set_in(["architecture", 0, "args"], {"out_features": 12000}),
        "in_features edited": set_in(["in_features"], 3),
        "dtype edited to float64": set_in(["dtype"], "float64"),
        "dtype edited to float16": set_in(["dtype"], "float16"),
        "layer name edited": set_in(["architecture", 0, "name"], "linaer"),
        "activation name edited": set_in(["architecture", 1, "name"], "swish"),
        "loss name edited": set_in(["loss"], "hinge2"),
        "format_version newer": set_in(["format_version"], FORMAT_VERSION + 1),
        "format_version 0": set_in(["format_version"], 0),
        "format_version '1' (a string)": set_in(["format_version"], "1"),
        "format name edited": set_in(["format"], "nn-scrotch"),
        "kind edited": set_in(["kind"], "banana"),
        "architecture not a list": set_in(["architecture"], {"linear": 1}),
        "settings: unknown lr": set_in(["settings", "lr"], -1),
        "preprocessing: unknown step": set_in(["preprocessing"], {"whiten": {}}),
        "preprocessing: mean NaN": lambda h: h["preprocessing"]["standardize"]["mean"].__setitem__(0, math.nan),
        "preprocessing: std Infinity": lambda h: h["preprocessing"]["standardize"]["std"].__setitem__(0, math.inf),
        "preprocessing: std -Infinity": lambda h: h["preprocessing"]["standardize"]["std"].__setitem__(1, -math.inf),
        "preprocessing: std 0": lambda h: h["preprocessing"]["standardize"]["std"].__setitem__(0, 0),
        "preprocessing: mean a 400-digit integer": lambda h: h["preprocessing"]["standardize"]["mean"].__setitem__(0, 10**400),
        "preprocessing: one number short": lambda h: h["preprocessing"]["standardize"]["mean"].pop(),
    }
    for name, change in edits.items():
        add(f"{name}, no checksum", lambda c=change: edited(good, c, sign="drop"))
    for name in ("shape edited (out_features 7)", "preprocessing: mean NaN", "format_version newer"):
        add(f"{name}, stale checksum", lambda c=edits[name]: edited(good, c, sign="keep"))
    for name in ("preprocessing: mean NaN", "preprocessing: std Infinity", "shape edited (12000-wide layers)"):
        add(f"{name}, checksum recomputed", lambda c=edits[name]: edited(good, c, sign="redo"))
    add("checksum edited", lambda: edited(good, set_in([CHECKSUM_KEY], "sha256:" + "0" * 64), sign="keep"))
    add("metadata not JSON", lambda: _with_metadata(good, "{not json"))
    add("metadata a JSON list", lambda: _with_metadata(good, "[1, 2]"))
    add("header 5000-digit integer", lambda: _with_metadata(good, '{"format": ' + "9" * 5000 + "}"))

    def nan_weight(t: dict) -> None:
        t["modules.0.weight"][0, 0] = math.nan

    def inf_bias(t: dict) -> None:
        t["modules.0.bias"][0] = math.inf

    def renamed(t: dict) -> None:
        t["modules.0.weights"] = t.pop("modules.0.weight")

    def wrong_dtype(t: dict) -> None:
        t["modules.0.weight"] = t["modules.0.weight"].double()

    def transposed(t: dict) -> None:
        t["modules.0.weight"] = t["modules.0.weight"].T.contiguous()

    def extra(t: dict) -> None:
        t["modules.9.weight"] = torch.ones(2)

    def missing(t: dict) -> None:
        del t["modules.2.bias"]

    for name, change in {"NaN weight": nan_weight, "infinite bias": inf_bias,
                         "tensor renamed": renamed, "tensor dtype float64": wrong_dtype,
                         "tensor transposed": transposed, "extra tensor": extra,
                         "missing tensor": missing}.items():
        add(f"{name}, checksum recomputed", lambda c=change: with_tensors(good, c, sign="redo"))
        add(f"{name}, stale checksum", lambda c=change: with_tensors(good, c, sign="keep"))
    return cases


def _torch_save(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _with_metadata(good: bytes, text: str) -> bytes:
    outer, body = split(good)
    outer["__metadata__"][METADATA_KEY] = text
    return join(outer, body)


# -- hostile input files ---------------------------------------------------------------


def labelled(rows: bytes) -> bytes:
    """CSV rows under a header naming the label column: predict reads the features."""
    return b"x1,x2,label\n" + rows


def objects(*rows: str) -> bytes:
    """JSON rows as objects with a label key: predict reads the features."""
    fields = (r.split(",") for r in rows)
    return ("[" + ",\n".join(f'{{"x1": {a}, "x2": {b}, "label": {c}}}' for a, b, c in fields)
            + "]").encode()


# Input files that must be refused: a value the model cannot take as it is (beyond float32,
# not finite, not a number) or a bad label; exit 0 with finite scores would hide it.
MUST_REFUSE = {
    "NaN value", "inf value", "-Infinity value", "1e39 (beyond float32)",
    "3e38,3e38 (overflows after standardising)", "1e400 (beyond float64)",
    "400-digit number in CSV", "CSV field of 200000 characters", "text value", "hex value",
    "empty field", "JSON 400-digit integer", "JSON 5000-digit integer", "JSON 1e400", "JSON NaN",
    "JSON Infinity", "JSON 3e38 pair", "JSON 1e39", "JSON nested 100000 deep", "a directory",
}
MUST_REFUSE_IN_EVALUATE = {"label 2", "label -1", "label 0.5", "header without label"}


def input_cases() -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes)."""
    deep = "[" * 100_000 + "]" * 100_000
    cases = {
        "empty": ("x.csv", b""),
        "only blank lines": ("x.csv", b"\n\n  \n"),
        "only a header": ("x.csv", b"x1,x2,label\n"),
        "BOM and header": ("x.csv", "\ufeffx1,x2,label\n0.1,0.2,1\n".encode()),
        "BOM, no header": ("x.csv", "\ufeff0.1,0.2,0\n".encode()),
        "CRLF line ends": ("x.csv", b"x1,x2,label\r\n0.1,0.2,1\r\n0.7,0.7,0\r\n"),
        "lone CR line ends": ("x.csv", b"0.1,0.2,1\r0.7,0.7,0\r"),
        "NaN value": ("x.csv", labelled(b"0.1,nan,1\n")),
        "inf value": ("x.csv", labelled(b"inf,0.2,1\n")),
        "-Infinity value": ("x.csv", labelled(b"-Infinity,0.2,1\n")),
        "1e39 (beyond float32)": ("x.csv", labelled(b"1e39,0.2,1\n")),
        "3e38,3e38 (overflows after standardising)": ("x.csv", labelled(b"3e38,3e38,1\n")),
        "-3.4e38 both": ("x.csv", labelled(b"-3.4e38,-3.4e38,0\n")),
        "1e308 both": ("x.csv", labelled(b"1e308,1e308,0\n")),
        "1e400 (beyond float64)": ("x.csv", labelled(b"1e400,0.2,1\n")),
        "400-digit number in CSV": ("x.csv", labelled(b"9" * 400 + b",0.2,1\n")),
        "CSV field of 200000 characters": ("x.csv", labelled(b"0.1,0.2,1\n" + b"1" * 200_000 + b",0.2,1\n")),
        "text value": ("x.csv", labelled(b"0.1,abc,1\n")),
        "hex value": ("x.csv", labelled(b"0x10,0.2,1\n")),
        "empty field": ("x.csv", labelled(b"0.1,,1\n")),
        "ragged rows": ("x.csv", b"0.1,0.2,1\n0.3,0.4\n"),
        "too many columns": ("x.csv", b"0.1,0.2,0.3,0.4,1\n"),
        "10000 columns": ("x.csv", (",".join(["0.5"] * 10_000) + "\n").encode()),
        "one column": ("x.csv", b"0.5\n0.6\n"),
        "label 2": ("x.csv", labelled(b"0.1,0.2,2\n")),
        "label -1": ("x.csv", labelled(b"0.1,0.2,-1\n")),
        "label 0.5": ("x.csv", labelled(b"0.1,0.2,0.5\n")),
        "header without label": ("x.csv", b"x1,x2\n0.1,0.2\n"),
        "label column twice": ("x.csv", b"x1,label,label\n0.1,1,1\n"),
        "quoted newline in a field": ("x.csv", b'x1,x2,label\n"0.1\n",0.2,1\n'),
        "unterminated quote": ("x.csv", b'0.1,"0.2,1\n0.3,0.4,0\n'),
        "NUL bytes": ("x.csv", labelled(b"0.1,0.2\x00,1\n")),
        "semicolons": ("x.csv", b"0.1;0.2;1\n"),
        "invalid UTF-8": ("x.csv", b"0.1,0.2,\xff\xfe1\n"),
        "UTF-16 file": ("x.csv", "x1,x2,label\n0.1,0.2,1\n".encode("utf-16")),
        "binary garbage": ("x.csv", bytes(range(256)) * 8),
        "JSON 400-digit integer": ("x.json", objects("0.1,0.2,1", "9" * 400 + ",0.5,0")),
        "JSON 5000-digit integer": ("x.json", objects("0.1,0.2,1", "9" * 5000 + ",0.5,0")),
        "JSON 1e400": ("x.json", objects("1e400,0.5,1")),
        "JSON NaN": ("x.json", objects("NaN,0.5,1")),
        "JSON Infinity": ("x.json", objects("0.5,Infinity,1")),
        "JSON 3e38 pair": ("x.json", objects("3e38,3e38,1")),
        "JSON 1e39": ("x.json", objects("1e39,0.5,1")),
        "JSON rows, all good": ("x.json", objects("0.1,0.2,1", "0.7,0.7,0")),
        "JSON nested 100000 deep": ("x.json", deep.encode()),
        "JSON an object": ("x.json", b'{"x": [1, 2]}'),
        "JSON a number": ("x.json", b"42"),
        "JSON empty list": ("x.json", b"[]"),
        "JSON list of empty lists": ("x.json", b"[[], []]"),
        "JSON strings": ("x.json", b'[["0.1", "0.2", "1"]]'),
        "JSON booleans": ("x.json", b"[[true, false, true]]"),
        "JSON nulls": ("x.json", b"[[null, 0.2, 1]]"),
        "JSON trailing comma": ("x.json", b"[[0.1, 0.2, 1],]"),
        "JSON not closed": ("x.json", b"[[0.1, 0.2, 1]"),
        "JSON extra data": ("x.json", b"[[0.1, 0.2, 1]] [1]"),
        "JSON objects with other keys": ("x.json", b'[{"a": 0.1, "b": 0.2, "label": 1}, {"a": 1, "c": 2, "label": 0}]'),
        "JSON mixed rows": ("x.json", b'[[0.1, 0.2, 1], {"a": 1}]'),
        "JSON nested rows": ("x.json", b"[[[0.1], [0.2], [1]]]"),
        "JSON with BOM": ("x.json", "\ufeff[[0.1, 0.2, 1]]".encode()),
        "a directory": ("dir", b""),
    }
    return cases


# -- running and judging ---------------------------------------------------------------


def cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def clean_refusal(code: int, out: str, err: str) -> str:
    """'' when the command refused cleanly: exit 2, one error line, nothing on stdout."""
    lines = err.strip().splitlines()
    if code != 2:
        return f"exit {code}: {(err.strip()[-200:] or out[-200:])!r}"
    if len(lines) != 1 or not lines[0].startswith("nn-cli: error: "):
        return f"stderr is not one error line: {err[:300]!r}"
    if out:
        return f"stdout not empty: {out[:100]!r}"
    return ""


def finite_output(code: int, out: str, err: str) -> str:
    """'' when the command succeeded with every number finite, or refused cleanly."""
    if code != 0:
        return clean_refusal(code, out, err)
    if any(word in out.lower() for word in ("nan", "inf")):
        return f"a non-finite number written: {out[:200]!r}"
    if err.strip():
        return f"exit 0 but stderr: {err[:200]!r}"
    return ""


def run_model_cases(good: bytes, rows: Path, rng: random.Random, every: int) -> list[Outcome]:
    outcomes = []
    for i, (name, write) in enumerate(model_cases(good, rng).items()):
        if i % every:
            continue
        with tempfile.TemporaryDirectory() as folder:
            path = write(Path(folder))
            why = clean_refusal(*cli("predict", path, "--input", rows))
        outcomes.append(Outcome("model files (predict)", name, not why, why))
    return outcomes


def run_checkpoint_cases(checkpoint: bytes, rng: random.Random, every: int) -> list[Outcome]:
    def nan_moment(t: dict) -> None:
        key = next(k for k in t if k.startswith("optimizer."))
        t[key].view(-1)[0] = math.nan

    cases = {
        "truncated": lambda: checkpoint[: len(checkpoint) // 2],
        "byte flipped in the data": lambda: flip(checkpoint, len(checkpoint) - 100),
        "byte flipped in the header": lambda: flip(checkpoint, 200),
        "NaN optimizer moment, checksum recomputed": lambda: with_tensors(checkpoint, nan_moment),
        "epoch beyond the settings, no checksum": lambda: edited(checkpoint, set_in(["training", "epoch"], 99)),
        "n_train 2e11, checksum recomputed": lambda: edited(
            checkpoint, set_in(["settings", "n_train"], 200_000_000_000), sign="redo"),
        "a model file, not a checkpoint": lambda: edited(checkpoint, set_in(["kind"], "model"), sign="redo"),
        "generator state removed": lambda: with_tensors(checkpoint, lambda t: t.pop("rng.shuffle")),
    }
    outcomes = []
    for i, (name, make) in enumerate(cases.items()):
        if i % every:
            continue
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "c.safetensors"
            path.write_bytes(make())
            why = clean_refusal(*cli("train", "--resume", path, "--save", Path(folder) / "m.safetensors"))
            if not why and (Path(folder) / "m.safetensors").exists():
                why = "a model was saved"
        outcomes.append(Outcome("checkpoints (train --resume)", name, not why, why))
    return outcomes


def run_input_cases(model: Path, every: int) -> list[Outcome]:
    outcomes = []
    for i, (name, (file_name, data)) in enumerate(input_cases().items()):
        if i % every:
            continue
        for command in ("predict", "evaluate"):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / file_name
                if file_name == "dir":
                    path.mkdir()
                else:
                    path.write_bytes(data)
                must_refuse = name in MUST_REFUSE or (
                    command == "evaluate" and name in MUST_REFUSE_IN_EVALUATE)
                judge = clean_refusal if must_refuse else finite_output
                why = judge(*cli(command, model, "--input", path))
            outcomes.append(Outcome(f"input files ({command})", name, not why, why))
    return outcomes


def run_kills(kills: int, rng: random.Random, folder: Path) -> list[Outcome]:
    """Each kill: a fresh run killed once at a random moment, resumed to the end."""
    command = [sys.executable, "-m", "cli", "train"]
    reference = folder / "reference.safetensors"
    subprocess.run([*command, *KILL_ARGS, "--save", str(reference)], cwd=ROOT, check=True,
                   capture_output=True)
    start = time.perf_counter()
    subprocess.run([*command, *KILL_ARGS, "--save", str(folder / "timing.safetensors")],
                   cwd=ROOT, check=True, capture_output=True)
    duration = time.perf_counter() - start
    outcomes = []
    for k in range(kills):
        checkpoint, model = folder / f"k{k}.ckpt.safetensors", folder / f"k{k}.safetensors"
        args = [*KILL_ARGS, "--checkpoint", str(checkpoint), "--checkpoint-every", "1",
                "--save", str(model)]
        delay = rng.uniform(0.3, 0.95) * duration
        process = subprocess.Popen([*command, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        if k < 2:  # a second run with the same files while the first is alive: refused
            while not checkpoint.exists() and process.poll() is None:  # the first holds its locks
                time.sleep(0.05)
            second = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True)
            if process.poll() is None:
                why = clean_refusal(second.returncode, second.stdout, second.stderr)
                outcomes.append(Outcome("concurrent runs (same --save)", f"second run {k + 1}",
                                        not why, why))
        time.sleep(max(0.0, delay - (time.perf_counter() - started)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        why, name = "", f"kill {k + 1} at {delay:.2f} s"
        if process.returncode != -signal.SIGKILL:
            print(f"{name}: missed, the run ended first; not counted", file=sys.stderr)
            continue
        if checkpoint.exists():
            resumed = subprocess.run([*command, "--resume", str(checkpoint), "--save", str(model)],
                                     cwd=ROOT, capture_output=True, text=True)
        else:  # killed before the first checkpoint: start again
            resumed = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True)
        if resumed.returncode != 0:
            why = f"resume exited {resumed.returncode}: {resumed.stderr.strip()[-200:]}"
        elif model.read_bytes() != reference.read_bytes():
            why = "the resumed model differs from the uninterrupted one"
        elif temp_files(model) or temp_files(checkpoint):
            why = "temporary files left"
        outcomes.append(Outcome("kills (resume bit-identical)", name, not why, why))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.group, []).append(o)
    rows = [("group", "tried", "handled cleanly", "failures")]
    for group, items in groups.items():
        ok = sum(o.ok for o in items)
        rows.append((group, str(len(items)), f"{ok} ({100 * ok / len(items):.0f} %)",
                     str(len(items) - ok)))
    total, ok = len(outcomes), sum(o.ok for o in outcomes)
    rows.append(("all", str(total), f"{ok} ({100 * ok / max(total, 1):.0f} %)", str(total - ok)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run(kills: int, seed: int, quick: bool) -> list[Outcome]:
    rng = random.Random(seed)
    every = 4 if quick else 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = save_model(folder / "good.safetensors", train(SETTINGS))
        rows = folder / "rows.csv"
        rows.write_text("0.1,0.2\n0.5,0.5\n")
        ckpt = folder / "good.ckpt.safetensors"
        code, _, err = cli("train", "--hidden", "6,5", "--epochs", "3", "--checkpoint", ckpt,
                           "--checkpoint-every", "1")
        assert code == 0, err
        outcomes = run_model_cases(model.read_bytes(), rows, rng, every)
        outcomes += run_checkpoint_cases(ckpt.read_bytes(), rng, every)
        outcomes += run_input_cases(model, every)
        if kills:
            outcomes += run_kills(kills, rng, folder)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="training runs to kill (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="picks offsets and kill moments")
    parser.add_argument("--quick", action="store_true", help="every fourth case, no kills")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    outcomes = run(0 if args.quick else args.kills, args.seed, args.quick)
    print(table(outcomes))
    failures = [o for o in outcomes if not o.ok]
    for o in failures:
        print(f"FAILED {o.group}: {o.name}: {o.why}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
