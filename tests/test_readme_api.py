"""The README's "Python API" example runs as written (in a fresh folder, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_code() -> str:
    text = README.read_text()
    block = re.search(r"<!-- python-api:start -->\s*```python\n(.*?)```\s*<!-- python-api:end -->", text, re.DOTALL)
    assert block, "the README's Python API section is missing its marked code block"
    return block.group(1)


@pytest.mark.slow
def test_the_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_api_code(), "README.md (Python API)", "exec"), {"__name__": "readme_api"})
    out = capsys.readouterr().out
    assert re.search(r"forget NLL at t=0.5: \d+\.\d+", out) and re.search(r"retain NLL at t=0.3: \d+\.\d+", out)
    assert (tmp_path / "runs" / "api" / "curve" / "last.ckpt").is_file()
