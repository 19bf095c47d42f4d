"""The texts a run sends: a seeded subset of a dataset, identical for every scenario.

Request i sends subset[i % len(subset)], so the same seed gives the same text for the
same request whatever the arrival process, pacing or number of users.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from arrivals.schedule import rng_for

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED = REPO_ROOT / "service" / "data" / "sentiment_texts.csv"
HUB_DATASET = "Sp1786/multiclass-sentiment-analysis-dataset"
PAPER_SUBSET = 1000


@dataclass(frozen=True)
class TextSubset:
    source: str
    pool_size: int
    texts: tuple[str, ...]
    pool_indices: tuple[int, ...]

    def for_request(self, request_index: int) -> tuple[int, str]:
        """(index into the source dataset, text) for this request."""
        k = request_index % len(self.texts)
        return self.pool_indices[k], self.texts[k]

    def describe(self) -> dict:
        return {"source": self.source, "pool_size": self.pool_size, "subset_size": len(self.texts)}


def load_texts(dataset: str, seed: int, subset: int = PAPER_SUBSET) -> TextSubset:
    """``dataset``: ``bundled``, ``hub`` (the paper's Hugging Face set) or a CSV file with a ``text`` column."""
    if subset < 1:
        raise ValueError(f"--subset must be an integer >= 1 (got {subset})")
    if dataset == "bundled":
        pool, source = _read_csv(BUNDLED), f"bundled:{BUNDLED.relative_to(REPO_ROOT)}"
    elif dataset == "hub":
        pool, source = _read_hub(), f"hub:{HUB_DATASET}"
    else:
        path = Path(dataset)
        if not path.is_file():
            raise ValueError(f"--dataset must be 'bundled', 'hub' or an existing CSV file (got {dataset!r})")
        pool, source = _read_csv(path), f"csv:{path}"
    if not pool:
        raise ValueError(f"--dataset {dataset}: no non-empty texts found")
    order = rng_for(seed, "texts").permutation(len(pool))[: min(subset, len(pool))]
    return TextSubset(
        source=source,
        pool_size=len(pool),
        texts=tuple(pool[i] for i in order),
        pool_indices=tuple(int(i) for i in order),
    )


def _read_csv(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "text" not in (reader.fieldnames or []):
            raise ValueError(f"--dataset {path}: needs a 'text' column (columns: {reader.fieldnames})")
        return [row["text"] for row in reader if row["text"] and row["text"].strip()]


def _read_hub() -> list[str]:
    try:
        import datasets

        table = datasets.load_dataset(HUB_DATASET, split="train")
    except Exception as err:  # no hub here is the common case: say so in one line
        raise ValueError(f"--dataset hub: could not load {HUB_DATASET} ({type(err).__name__}: {err}); "
                         "use --dataset bundled or a CSV file offline") from None
    return [t for t in table["text"] if isinstance(t, str) and t.strip()]
