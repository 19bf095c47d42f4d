"""The reference paper's three scenarios: our drawn gaps beside the paper's measured ones and the theory."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from burstbench.arrivals import SCENARIOS, ArrivalSchedule

from .fidelity import fit_gaps, gap_figure

# Section 3.3 of the reference paper: empirical mean (s) and variance (s^2), n about 1,000.
PAPER_EMPIRICAL = {"steady": (1.93, 3.59), "moderate": (1.97, 2.84), "extreme": (1.95, 4.64)}


def paper_gaps(seed: int = 0, n: int = 1000) -> pd.DataFrame:
    rows = []
    for name, dist in SCENARIOS.items():
        gaps = ArrivalSchedule.draw(dist, n, seed).gaps_s
        fit = fit_gaps(gaps, dist, "scheduled", seed=seed)
        paper_mean, paper_var = PAPER_EMPIRICAL[name]
        rows.append({"scenario": name, "process": str(dist), "theory mean (s)": dist.mean, "theory var (s^2)": dist.var,
                     "paper mean (s)": paper_mean, "paper var (s^2)": paper_var,
                     "ours mean (s)": fit.mean_s, "ours var (s^2)": fit.var_s2,
                     "KS p": fit.ks_pvalue, "AD p": fit.ad_pvalue})
    return pd.DataFrame(rows).set_index("scenario")


def paper_gaps_table(seed: int = 0, n: int = 1000, figures_dir: Path | None = None) -> str:
    table = paper_gaps(seed, n)
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
        for name, dist in SCENARIOS.items():
            gap_figure(ArrivalSchedule.draw(dist, n, seed).gaps_s, dist, f"{name}: {n} drawn gaps (seed {seed}) vs {dist}",
                       figures_dir / f"gaps_{name}.png")
    return (f"{n} gaps drawn per scenario with seed {seed} (schedule stream), against the paper's and the theory:\n"
            + table.to_markdown(floatfmt=".3g"))
