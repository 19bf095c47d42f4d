"""Unit tests for the seeded text subset a run sends (locustfiles/texts.py)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from burstbench.locustfiles.texts import BUNDLED, load_texts

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bundled_rows():
    with (REPO_ROOT / "service" / "data" / "sentiment_texts.csv").open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_bundled_is_the_service_dataset():
    assert BUNDLED == REPO_ROOT / "service" / "data" / "sentiment_texts.csv"
    assert len(_bundled_rows()) == 1500


def test_bundled_subset_of_1000_from_1500():
    subset = load_texts("bundled", seed=0)
    assert subset.pool_size == 1500
    assert len(subset.texts) == 1000
    assert len(subset.pool_indices) == 1000
    assert len(set(subset.pool_indices)) == 1000  # drawn without replacement
    assert all(0 <= i < 1500 for i in subset.pool_indices)
    assert subset.describe() == {"source": subset.source, "pool_size": 1500, "subset_size": 1000}
    assert subset.source.startswith("bundled:")


def test_pool_indices_point_at_the_source_rows():
    rows = _bundled_rows()
    subset = load_texts("bundled", seed=0)
    for k in (0, 1, 500, 999):
        idx, text = subset.for_request(k)
        assert rows[idx] == text


def test_every_text_non_empty():
    subset = load_texts("bundled", seed=0)
    assert all(isinstance(t, str) and t.strip() for t in subset.texts)


def test_same_seed_same_subset():
    a = load_texts("bundled", seed=0)
    b = load_texts("bundled", seed=0)
    assert a.texts == b.texts
    assert a.pool_indices == b.pool_indices


def test_other_seed_other_subset():
    a = load_texts("bundled", seed=0)
    b = load_texts("bundled", seed=1)
    assert a.pool_indices != b.pool_indices
    # a different sample, not only a different order
    assert set(a.pool_indices) != set(b.pool_indices)


def test_subset_is_a_shuffle_not_the_file_order():
    subset = load_texts("bundled", seed=0)
    assert list(subset.pool_indices) != sorted(subset.pool_indices)


def test_for_request_cycles():
    subset = load_texts("bundled", seed=0)
    assert subset.for_request(1000) == subset.for_request(0)
    assert subset.for_request(1999) == subset.for_request(999)
    assert subset.for_request(2003) == subset.for_request(3)
    assert subset.for_request(0) != subset.for_request(1)
    # the first 1000 requests cover all 1000 texts once
    assert len({subset.for_request(i)[0] for i in range(1000)}) == 1000


def test_subset_larger_than_pool_takes_whole_pool(tmp_path):
    path = _write_csv(tmp_path / "small.csv", ["id", "text"], [["1", "alpha"], ["2", "beta"], ["3", "gamma"]])
    subset = load_texts(str(path), seed=0, subset=10)
    assert subset.pool_size == 3
    assert sorted(subset.texts) == ["alpha", "beta", "gamma"]
    assert subset.for_request(3) == subset.for_request(0)
    assert subset.source == f"csv:{path}"


def test_csv_skips_blank_texts(tmp_path):
    path = _write_csv(tmp_path / "mixed.csv", ["text"], [["one"], [""], ["   "], ["two"]])
    subset = load_texts(str(path), seed=0)
    assert subset.pool_size == 2
    assert sorted(subset.texts) == ["one", "two"]


def test_csv_without_text_column_lists_columns(tmp_path):
    path = _write_csv(tmp_path / "notext.csv", ["sentence", "label"], [["hello", "positive"]])
    with pytest.raises(ValueError) as info:
        load_texts(str(path), seed=0)
    msg = str(info.value)
    assert "'text'" in msg
    assert "sentence" in msg
    assert "label" in msg


def test_missing_path_mentions_choices(tmp_path):
    missing = tmp_path / "does-not-exist.csv"
    with pytest.raises(ValueError) as info:
        load_texts(str(missing), seed=0)
    msg = str(info.value)
    assert "bundled" in msg
    assert "hub" in msg
    assert "does-not-exist.csv" in msg


def test_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(ValueError, match="bundled"):
        load_texts(str(tmp_path), seed=0)


@pytest.mark.parametrize("subset", [0, -5])
def test_subset_must_be_positive(subset):
    with pytest.raises(ValueError, match="--subset"):
        load_texts("bundled", seed=0, subset=subset)


def test_all_blank_texts_rejected(tmp_path):
    path = _write_csv(tmp_path / "blank.csv", ["text", "label"], [["", "a"], ["   ", "b"], ["\t", "c"]])
    with pytest.raises(ValueError, match="no non-empty texts"):
        load_texts(str(path), seed=0)


def test_empty_csv_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="'text' column"):
        load_texts(str(path), seed=0)


def test_bad_seed_rejected():
    with pytest.raises(ValueError, match="--seed"):
        load_texts("bundled", seed=-1)
