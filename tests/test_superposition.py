"""The drift a distributed run must avoid: independent per-worker schedules superpose towards Poisson."""
from __future__ import annotations

import numpy as np

from burstbench.analysis.superposition import drift_table, main, partitioned_offsets
from burstbench.arrivals import ArrivalSchedule, Gamma

EXTREME = Gamma(shape=0.8, mean=2.0)


def test_partitioned_sends_merge_back_to_the_single_process_schedule():
    single = ArrivalSchedule.draw(EXTREME, 5000, 3).offsets_s
    for workers in (1, 2, 3, 7, 16):
        assert np.array_equal(partitioned_offsets(EXTREME, workers, 5000, 3), single)


def test_independent_workers_lose_the_burstiness_and_partitioned_ones_keep_it():
    table = drift_table(EXTREME, workers=(1, 8), n=20_000, seed=0).set_index(["method", "workers"])
    independent, ours = table.loc[("independent", 8)], table.loc[("partitioned", 8)]
    # Eight independent gamma(0.8) processes: the merged gaps are no longer gamma(0.8) ...
    assert independent["ks_p"] < 1e-6
    assert independent["cv"] < EXTREME.cv - 0.05  # ... and their CV has slid towards Poisson's 1
    # One partitioned schedule is the declared process at any worker count.
    assert ours["ks_p"] > 0.01
    assert abs(ours["cv"] - EXTREME.cv) < 0.03
    assert ours["ks_distance"] == table.loc[("partitioned", 1), "ks_distance"]


def test_superposition_command_writes_table_and_figure(tmp_path):
    table = main(0.8, 2.0, [1, 4], 2000, 0, tmp_path)
    assert len(table) == 4
    assert {p.name for p in tmp_path.iterdir()} == {"superposition.csv", "superposition.md", "superposition.png"}
    assert (tmp_path / "superposition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
