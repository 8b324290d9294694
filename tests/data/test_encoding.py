"""A byte that is not UTF-8 in a data file is one line naming the file, the line and the column (Python's own
``'utf-8' codec can't decode byte 0xff in position 558`` names neither)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcu_lightning.core.errors import InputError
from mcu_lightning.data.qa.tofu import load_tofu_split
from mcu_lightning.data.samplers.curriculum import read_scores


def test_a_tofu_file_with_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path: Path) -> None:
    rows = [{"question": "Who?", "answer": "Ana"}, {"question": "Where?", "answer": "Lisboa"}]
    lines = [json.dumps(row).encode() for row in rows]
    lines.append(b'{"question": "When?", "answer": "19\xff90"}')
    path = tmp_path / "forget10.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as info:
        load_tofu_split("forget10", tmp_path)
    column = lines[2].index(b"\xff") + 1
    assert str(info.value) == (
        f"TOFU file '{path}' line 3 column {column}: byte 0xff is not UTF-8 (invalid start byte); "
        "save the file as UTF-8"
    )


def test_a_curriculum_score_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "scores.txt"
    path.write_bytes("0.5\n0.25\n\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"curriculum score file '.*scores\.txt' line 3 column 1: byte 0xe9"):
        read_scores(path)
