"""The README's Python blocks run, in order, in an empty folder.

A block that the prose before it names as a file ("Save this as `my_layers.py`", "from your
own `test_my_layers.py`") is written to that file; a test file's test functions are then run.
Every other block runs as a script; files the examples write land in tmp_path. One change
keeps the suite quick: every `epochs=N` runs as `epochs=5` (the checkpoint example saves
every 5 epochs). Every call still runs; at the README's 50 epochs these blocks take about
half a minute more on a 2-core machine.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
EPOCHS = re.compile(r"\bepochs=\d+")
FILE_NAME = re.compile(r"`(\w+\.py)`[^`]*$")  # the last file named in the prose just before a block


def python_blocks(text: str) -> list[tuple[str | None, str]]:
    """(file name the prose gives it or None, code) for every ```python block, in order."""
    blocks, end = [], 0
    for match in BLOCK.finditer(text):
        prose = text[end:match.start()].rstrip()
        last_paragraph = prose.rsplit("\n\n", 1)[-1]
        named = FILE_NAME.search(last_paragraph)
        as_file = named and re.search(r"save this as|your own", last_paragraph, re.I)
        blocks.append((named.group(1) if as_file else None, match.group(1)))
        end = match.end()
    return blocks


def test_the_readme_has_python_blocks_and_files_among_them():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5
    assert {"my_layers.py", "test_my_layers.py"} <= {name for name, _ in blocks}
    assert any(EPOCHS.search(code) for _, code in blocks)  # what the quick run shortens


def test_the_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for index, (name, code) in enumerate(python_blocks(README.read_text())):
        if name is None:
            name = f"block_{index}.py"
        (tmp_path / name).write_text(EPOCHS.sub("epochs=5", code))
        if name.startswith("test_"):
            namespace = runpy.run_path(str(tmp_path / name))
            tests = [f for key, f in namespace.items() if key.startswith("test_") and callable(f)]
            assert tests, f"{name} from the README defines no test"
            for test in tests:
                test()
        elif name.startswith("block_"):
            runpy.run_path(str(tmp_path / name), run_name="__main__")
