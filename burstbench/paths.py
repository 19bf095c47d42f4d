"""Where things live: the installed package's own files, and the working folder's build/ and results/.

Defaults are relative to the working directory, never to the installed code, so an installed package
(no checkout) writes its models and runs where the user stands, and a checkout's ``make`` targets,
run from its root, keep using ``build/`` and ``results/`` there.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def package_folder(name: str) -> Path:
    """The folder of subpackage ``name`` (``locustfiles``, ``service``, ...), installed or checked out."""
    import importlib

    return Path(importlib.import_module(f"burstbench.{name}").__file__).resolve().parent


def results_dir() -> Path:
    return Path("results")


def build_dir() -> Path:
    return Path("build")


def default_model_dir() -> Path:
    return build_dir() / "models" / "untrained-roberta-base"


def checkout_root() -> Path | None:
    """The repository root when the code runs from a checkout (editable install), else None."""
    root = package_folder("arrivals").parent
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None
