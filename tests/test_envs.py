"""The conda environments under envs/ agree with pyproject.toml."""

import re

import pytest
import yaml
from conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

# PyPI name → conda-forge name, where they differ.
CONDA_NAMES = {
    "opencv-python-headless": "py-opencv",
    "torch": "pytorch",
    "matplotlib": "matplotlib-base",
}
ENVS = {"data.yaml": (), "paths.yaml": (), "train.yaml": ("train",)}


def requirements(extras=()):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    parsed = {}
    for spec in specs:
        name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
        parsed[CONDA_NAMES.get(name, name)] = bound.replace(" ", "")
    return parsed


@pytest.mark.parametrize("env", sorted(ENVS))
def test_environment_matches_pyproject(env):
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    listed = {}
    for dep in spec["dependencies"]:
        if isinstance(dep, str):
            name, _, bound = dep.partition(" ")
            listed[name] = bound.replace(" ", "")
    wanted = requirements(ENVS[env])
    missing = sorted(set(wanted) - set(listed))
    assert not missing, f"envs/{env} lacks {missing} (pyproject.toml requires them)"
    differ = {n: (listed[n], wanted[n]) for n in wanted if listed[n] != wanted[n]}
    assert not differ, f"envs/{env}: version bounds differ from pyproject.toml: {differ}"
    assert listed["python"] == ">=3.10"
    # Not `pip: [-e ../]`: Snakemake creates the environment from a copy of the file under
    # .snakemake/conda/, where ../ is not this checkout. The workflow puts src/ on PYTHONPATH.
    assert not [d for d in spec["dependencies"] if isinstance(d, dict)], "no pip section"


def test_jobs_import_the_package_from_the_checkout():
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert 'SRC = str(Path(workflow.basedir) / "src")' in common
    assert "os.environ.update(PYTHONPATH=" in common
