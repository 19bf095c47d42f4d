"""One way to write a figure: PNG at a fixed resolution, and the figure always closed."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, save as PNG and close ``fig`` (also when saving fails, so no figure leaks)."""
    path = Path(path)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path
