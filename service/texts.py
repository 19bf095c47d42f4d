"""The bundled labelled texts (see data/README.md for how they were made)."""
from __future__ import annotations

import csv
from pathlib import Path

BUNDLED_TEXTS = Path(__file__).parent / "data" / "sentiment_texts.csv"
LABELS = ("negative", "neutral", "positive")


def load_bundled() -> list[tuple[str, str]]:
    """(text, label) pairs of the bundled set, in file order."""
    with BUNDLED_TEXTS.open(newline="", encoding="utf-8") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]
