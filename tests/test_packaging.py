"""The install story: pyproject.toml and environment.yml declare the same packages, the package data ships, and the
stored notebooks are executed cleanly."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _env_pip_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1 :]:
        m = re.match(r"^\s+-\s+(.+?)\s*$", line)
        if not m:
            break
        reqs.append(m.group(1))
    return reqs


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = sorted(project["dependencies"], key=_name)
    env = sorted((r for r in _env_pip_requirements() if r != "-e ."), key=_name)
    assert [_name(r) for r in env] == [_name(r) for r in pyproject], "environment.yml and pyproject.toml list different packages"
    assert env == pyproject, "environment.yml and pyproject.toml pin different versions"
    assert "-e ." in _env_pip_requirements(), "environment.yml must install minivid itself"


def test_torch_requirement_is_a_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if _name(r) == "torch")
    assert "==" not in torch_req and ">=" in torch_req, "keep torch a range real users can meet"


def test_shipped_files_are_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = project["tool"]["setuptools"]["package-data"]
    assert (ROOT / "minivid" / "assets" / "mnist_5k.npz").is_file()
    assert "*.npz" in package_data["minivid.assets"]
    assert {"*.pt", "*.json"} <= set(package_data["minivid.weights"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"<!-- TEST-COMMAND -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert m, "README must show the test command in a fenced block after <!-- TEST-COMMAND -->"
    command = m.group(1).strip()
    assert command in ci, f".ci/run must call exactly the README's test command: {command!r}"


def test_every_shipped_model_loads_verified_and_has_its_recipe():
    from minivid import checkpoints

    names = checkpoints.available()
    assert {"diffusion", "vqvae", "autoregressive"} <= set(names)
    for name in names:
        card = checkpoints.manifest(name)
        weights = ROOT / "minivid" / "weights" / card["file"]
        # stored in half precision: at most the models' budget of 10 M parameters at two bytes each
        assert weights.stat().st_size < 2 * 10_000_000 + 1e6, f"{name}: shipped weights should stay a few MB"
        assert card["recipe"].startswith("minivid train "), f"{name}: the manifest must say how to retrain it"
        model = checkpoints.pretrained(name)  # checks the SHA-256 before loading
        assert sum(p.numel() for p in model.parameters()) == card["parameters"] <= 10_000_000


STORED_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", STORED_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_notebooks_are_executed_cleanly_with_their_figures(path):
    """Run top to bottom, no errors, no local paths, and every cell that draws a figure stores its picture
    (a notebook executed with a non-inline matplotlib backend stores none, and reads empty on GitHub)."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed once, top to bottom: {counts}"
    for i, cell in enumerate(cells):
        outputs = cell.get("outputs", [])
        assert not [o for o in outputs if o.get("output_type") == "error"], f"{path.name}: code cell {i} stored an error"
        text = json.dumps(outputs)
        assert not re.search(r"/(work|tmp|home|root)/", text), f"{path.name}: code cell {i} shows a local path"
        source = "".join(cell["source"])
        if "plt.subplots(" in source or "plt.figure(" in source:
            assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: code cell {i} draws but stores no picture"


def test_older_weights_note_finds_entries_measured_on_earlier_weights(monkeypatch):
    from minivid import checkpoints

    metrics = {"protocol": {}, "schedules": [], "samples": {}, "measured_on_stage_8_weights": ["schedules"],
               "measured_on_stage_8_weights_note": "measured on the stage-8 weights", "measured_before_stage_6": ["samples"]}
    monkeypatch.setattr(checkpoints, "manifest", lambda name: {"metrics": metrics})
    assert checkpoints.older_weights_note("hybrid", "schedules") == "measured on the stage-8 weights"
    assert checkpoints.older_weights_note("hybrid", "samples") == "measured on earlier weights (measured before stage 6)"
    assert checkpoints.older_weights_note("hybrid", "protocol") is None
