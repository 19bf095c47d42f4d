"""The texts a run sends: a seeded subset of a dataset, identical for every scenario.

Request i sends subset[i % len(subset)], so the same seed gives the same text for the
same request whatever the arrival process, pacing or number of users.

Datasets: ``bundled`` (service/data), ``hub`` (the paper's Hugging Face set),
``hub:<name>[:split]`` (any Hugging Face dataset, through ``datasets``), or a CSV,
JSONL or Parquet file; the texts are read from one column (``text`` unless told).
"""
from __future__ import annotations

import csv
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from burstbench.arrivals.schedule import rng_for
from burstbench.errors import ParameterError

BUNDLED = Path(__file__).resolve().parent.parent / "service" / "data" / "sentiment_texts.csv"
BUNDLED_NAME = "service/data/sentiment_texts.csv"  # as recorded in run.json, installed or checked out
HUB_DATASET = "Sp1786/multiclass-sentiment-analysis-dataset"
PAPER_SUBSET = 1000
DEFAULT_COLUMN = "text"
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
DATASET_CHOICES = ("--dataset must be 'bundled', 'hub' or an existing CSV file "
                   "(or a .jsonl or .parquet file, or hub:<name>[:split])")


@dataclass(frozen=True)
class TextSubset:
    source: str
    pool_size: int
    texts: tuple[str, ...]
    pool_indices: tuple[int, ...]
    skipped: int = 0  # rows of the source column that were blank or not text

    def for_request(self, request_index: int) -> tuple[int, str]:
        """(index into the source dataset, text) for this request."""
        k = request_index % len(self.texts)
        return self.pool_indices[k], self.texts[k]

    def describe(self) -> dict:
        return {"source": self.source, "pool_size": self.pool_size, "subset_size": len(self.texts)}


def load_texts(dataset: str, seed: int, subset: int = PAPER_SUBSET, column: str = DEFAULT_COLUMN) -> TextSubset:
    """``dataset``: ``bundled``, ``hub``, ``hub:<name>[:split]`` or a CSV, JSONL or Parquet file."""
    if subset < 1:
        raise ParameterError(f"{{subset}} must be an integer >= 1 (got {subset})", "subset")
    if dataset == "bundled":
        (pool, skipped), source = _read_csv(BUNDLED, DEFAULT_COLUMN), f"bundled:{BUNDLED_NAME}"
    elif dataset == "hub" or dataset.startswith("hub:"):
        name, split = _hub_name(dataset)
        (pool, skipped), source = _read_hub(dataset, name, split, column), f"hub:{name}:{split}"
    else:
        path = Path(dataset)
        fmt = FILE_FORMATS.get(path.suffix.lower(), "csv")
        if not path.is_file():
            raise ValueError(f"{DATASET_CHOICES} (got {dataset!r})")
        reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[fmt]
        (pool, skipped), source = reader(path, column), f"{fmt}:{path}"
    if not pool:
        raise ParameterError(f"{{dataset}} {dataset}: no non-empty texts found in column {column!r}", "dataset")
    order = rng_for(seed, "texts").permutation(len(pool))[: min(subset, len(pool))]
    return TextSubset(
        source=source,
        pool_size=len(pool),
        texts=tuple(pool[i] for i in order),
        pool_indices=tuple(int(i) for i in order),
        skipped=skipped,
    )


def _missing_column(path, column: str, columns) -> ValueError:
    listed = ", ".join(str(c) for c in columns) if columns else "none"
    return ValueError(f"--dataset {path}: needs a {column!r} column (choose one with --text-column; "
                      f"available columns: {listed})")


def _usable(values) -> tuple[list[str], int]:
    """The non-blank strings of a column, and how many values were skipped (blank or not text)."""
    texts = [v for v in values if isinstance(v, str) and v.strip()]
    return texts, len(values) - len(texts)


def _read_csv(path: Path, column: str) -> tuple[list[str], int]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise _missing_column(path, column, reader.fieldnames)
        return _usable([row[column] for row in reader])


def _read_table(path: Path, column: str, read) -> tuple[list[str], int]:
    try:
        table = read(path)
    except Exception as err:  # a malformed file: one line, naming it
        raise ParameterError(f"{{dataset}} {path}: unreadable ({type(err).__name__}: {str(err)[:200]})", "dataset") from None
    if column not in table.columns:
        raise _missing_column(path, column, list(table.columns))
    return _usable(table[column].tolist())


def _read_jsonl(path: Path, column: str) -> tuple[list[str], int]:
    import pandas as pd

    return _read_table(path, column, lambda p: pd.read_json(p, lines=True, dtype=False))


def _read_parquet(path: Path, column: str) -> tuple[list[str], int]:
    import pandas as pd

    return _read_table(path, column, pd.read_parquet)


def _hub_name(dataset: str) -> tuple[str, str]:
    if dataset == "hub":
        return HUB_DATASET, "train"
    name, _, split = dataset[len("hub:"):].partition(":")
    if not name:
        raise ParameterError(f"{{dataset}} hub:<name>[:split] needs a dataset name (got {dataset!r})", "dataset")
    return name, split or "train"


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP connect to the hub, so that an offline machine fails in a second, not after retries."""
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except (OSError, TypeError):
        return False


def _read_hub(flag: str, name: str, split: str, column: str) -> tuple[list[str], int]:
    if not hub_reachable():
        # Offline: only a locally cached copy can load, and the failure is immediate.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        for module, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
            if module in sys.modules:
                setattr(sys.modules[module], attr, True)
    try:
        import datasets

        table = datasets.load_dataset(name, split=split)
    except Exception as err:  # no hub here is the common case: say so in one line
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise ParameterError(f"{{dataset}} {flag}: could not load {name} (split {split}) ({reason}); "
                         "use {dataset} bundled or a CSV, JSONL or Parquet file offline", "dataset") from None
    if column not in table.column_names:
        raise _missing_column(flag, column, table.column_names)
    return _usable(table[column])
