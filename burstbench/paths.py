"""Where things live: the installed package's own files, and the working folder's build/ and results/.

Defaults are relative to the working directory, never to the installed code, so an installed package
(no checkout) writes its models and runs where the user stands, and a checkout's ``make`` targets,
run from its root, keep using ``build/`` and ``results/`` there.
"""
from __future__ import annotations

from pathlib import Path

def package_folder(name: str) -> Path:
    """The folder of subpackage ``name`` (``locustfiles``, ``service``, ...), installed or checked out."""
    import importlib

    return Path(importlib.import_module(f"burstbench.{name}").__file__).resolve().parent


def default_model_dir() -> Path:
    return Path("build") / "models" / "untrained-roberta-base"
