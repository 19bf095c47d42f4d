"""How the package is put together: one import package, a load side that imports no analysis or
experiment, no sys.path edits, no module named after the standard library, modules of a readable size."""
from __future__ import annotations

import ast
import sys

import pytest

from conftest import REPO_ROOT

# Folder -> subpackage of burstbench (pyproject.toml's package-dir).
PACKAGES = {"burstbench": "burstbench", "arrivals": "burstbench.arrivals", "locustfiles": "burstbench.locustfiles",
            "service": "burstbench.service", "analysis": "burstbench.analysis",
            "resilience": "burstbench.resilience", "experiments": "burstbench.experiments"}
# What runs inside Locust's gevent process, and what it must never pull in.
LOAD_SIDE = ("arrivals", "locustfiles")
NOT_ON_THE_LOAD_SIDE = ("burstbench.analysis", "burstbench.experiments", "burstbench.harness",
                        "burstbench.resilience", "burstbench.service", "burstbench.cli")
MAX_LINES = 450  # "about 400"
# A dataset recipe, not code anyone imports: word lists and templates that make service/data/sentiment_texts.csv.
SIZE_EXCEPTIONS = {"service/data/make_texts.py"}


def modules():
    for folder in PACKAGES:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def imported(path) -> set[str]:
    """Absolute names imported by ``path`` (relative imports resolved against its package)."""
    folder = path.parent.relative_to(REPO_ROOT).parts
    package = PACKAGES.get(folder[0], folder[0]) if folder else ""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("folder", LOAD_SIDE)
def test_the_load_side_imports_no_analysis_experiment_harness_or_service(folder):
    offending = {}
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        bad = sorted(n for n in imported(path) if n.startswith(NOT_ON_THE_LOAD_SIDE))
        if bad:
            offending[str(path.relative_to(REPO_ROOT))] = bad
    assert not offending


def test_every_import_of_our_own_code_goes_through_the_burstbench_package():
    top_level = {n.split(".")[0] for p in modules() for n in imported(p)}
    assert not top_level & (set(PACKAGES) - {"burstbench"})  # no `import analysis`, `from service import ...`


def test_no_code_edits_sys_path():
    edits = [str(p.relative_to(REPO_ROOT)) for p in [*modules(), *(REPO_ROOT / "tests").rglob("*.py")]
             if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert edits == [p for p in edits if p == "tests/test_structure.py"]


def test_no_module_is_named_after_a_standard_library_module():
    clashing = sorted(str(p.relative_to(REPO_ROOT)) for p in modules() if p.stem in sys.stdlib_module_names)
    assert not clashing


def test_modules_stay_a_readable_size():
    long = {str(p.relative_to(REPO_ROOT)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES
            and str(p.relative_to(REPO_ROOT)) not in SIZE_EXCEPTIONS}
    assert not long


def test_one_import_package_is_all_that_pyproject_installs():
    import tomllib

    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "burstbench" or p.startswith("burstbench.") for p in setuptools["packages"])
    assert {v for v in setuptools["package-dir"].values()} == set(PACKAGES)
