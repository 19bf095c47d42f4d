"""`burstbench trace-fit`: candidate arrival processes fitted to a trace's gaps, ranked by AIC, and the
command that generates traffic like the best one."""
from __future__ import annotations

import json
import math
import re
import shlex
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, stats

from burstbench.analysis import mmpp_fit
from burstbench.analysis.__main__ import main
from burstbench.analysis.mmpp_fit import fit_mmpp2, forward_loglik, loglik
from burstbench.analysis.trace_fit import Candidate, reproduce, write_trace_fit
from burstbench.arrivals import MMPP, Exponential, FromDistribution, Gamma
from burstbench.arrivals.notation import parse_distribution, parse_mmpp
from burstbench.cli_reference import parse_only

# The printed forms, as `burstbench run` and the load spec take them.
NUMBER = r"[0-9]+(?:\.[0-9]+)?"
COMMAND_FORMS = {
    "gamma": rf"burstbench run --arrival gamma --shape (?P<shape>{NUMBER}) --rate (?P<rate>{NUMBER})",
    "exponential": rf"burstbench run --arrival exponential --rate (?P<rate>{NUMBER})",
    "lognormal": rf'burstbench run --distribution "lognorm\(s=(?P<s>{NUMBER})\)" --rate (?P<rate>{NUMBER})',
    "Weibull": rf'burstbench run --distribution "weibull_min\(c=(?P<c>{NUMBER})\)" --rate (?P<rate>{NUMBER})',
    "MMPP2": rf'burstbench run --mmpp "calm (?P<r1>{NUMBER})/s for (?P<d1>{NUMBER})s, '
             rf'burst (?P<r2>{NUMBER})/s for (?P<d2>{NUMBER})s" --rate (?P<rate>{NUMBER})',
}

# Tolerances from the spread of the estimates over 20-40 seeds at 4,000-5,000 gaps (checked when this was
# written): the shapes' relative standard deviation was 0.9-1.6%, so 6% is about 4 sigma; the MMPP's rates
# 1.5-3% (15% is 5 sigma) and its dwell times 11-12% (35% is about 3 sigma: dwells are seen as few as
# ~100 visits of each state in 5,000 gaps, so they are the loosest).
SHAPE_RTOL, MEAN_RTOL, MMPP_RATE_RTOL, MMPP_DWELL_RTOL = 0.06, 0.05, 0.15, 0.35
N_GAPS = 4000


def _families():
    """(gaps, the family that must win, its shape parameter and true value), each from a fixed seed."""
    return {
        "gamma": (lambda rng: Gamma(shape=0.6, mean=0.5).sample(N_GAPS, rng), "shape", 0.6),
        "lognormal": (lambda rng: stats.lognorm(1.0, scale=0.3).rvs(N_GAPS, random_state=rng), "s", 1.0),
        "Weibull": (lambda rng: stats.weibull_min(0.7, scale=0.4).rvs(N_GAPS, random_state=rng), "c", 0.7),
        "exponential": (lambda rng: rng.exponential(0.5, N_GAPS), None, None),
        "MMPP2": (lambda rng: MMPP(rates=(40.0, 2.0), dwell_s=(1.0, 5.0)).sample(5000, rng), None, None),
    }


def _write_trace(path, gaps, decimals=None):
    """Seconds from 0 (an epoch origin would quantise the gaps to 2e-7 s and turn the shortest into ties)."""
    stamps = np.concatenate([[0.0], np.cumsum(gaps)])
    pd.DataFrame({"timestamp": np.round(stamps, decimals) if decimals else stamps}).to_csv(path, index=False)
    return path


def _command(text: str) -> str:
    (line,) = [line[2:] for line in text.splitlines() if line.startswith("$ burstbench run")]
    return line


@pytest.mark.parametrize("family", list(_families()))
def test_the_generating_family_wins_by_aic_and_its_parameters_come_back(tmp_path, family):
    draw, key, true = _families()[family]
    gaps = draw(np.random.default_rng(20261201))
    trace, text, out = write_trace_fit(_write_trace(tmp_path / f"{family}.csv", gaps), out=tmp_path / "fit")
    table = pd.read_csv(out / "trace-fit.csv")
    assert list(table["process"].sort_values()) == sorted(["gamma", "lognormal", "Weibull", "exponential", "MMPP2"])
    assert (table["aic"].diff().dropna() >= 0).all() and table["delta_aic"].iloc[0] == 0
    assert np.allclose(table["aic"], 2 * table["k"] - 2 * table["loglik"])
    best = table.iloc[0]
    params = {row["process"]: json.loads(row["params"]) for _, row in table.iterrows()}
    if family == "exponential":
        # The gamma and the Weibull nest the exponential (shape 1): one of them may edge it out by chance. Rule:
        # the exponential wins, or the winner is the gamma or Weibull with its shape within 0.05 of 1 and the
        # exponential within 2 AIC of it (a tie by AIC's own convention).
        exponential = table.set_index("process").loc["exponential"]
        shape = params[best["process"]].get("shape", params[best["process"]].get("c"))
        assert best["process"] == "exponential" or (
            best["process"] in ("gamma", "Weibull") and abs(shape - 1) < 0.05 and exponential["delta_aic"] < 2)
    else:
        assert best["process"] == family, table[["process", "loglik", "delta_aic"]]
    fitted = params[family]
    assert fitted["mean_s"] == pytest.approx(gaps.mean(), rel=MEAN_RTOL)
    if key:
        assert fitted[key] == pytest.approx(true, rel=SHAPE_RTOL)
    if family == "MMPP2":  # reported calm state first: rates (2, 40)/s, dwell (5, 1) s
        np.testing.assert_allclose(fitted["rates_per_s"], [2.0, 40.0], rtol=MMPP_RATE_RTOL)
        np.testing.assert_allclose(fitted["dwell_s"], [5.0, 1.0], rtol=MMPP_DWELL_RTOL)

    # The command to generate traffic like the best law, at the trace's rate, in the agreed form.
    command = _command(text)
    m = re.fullmatch(COMMAND_FORMS[best["process"]], command)
    assert m, command
    assert float(m["rate"]) == pytest.approx(1 / trace.mean, rel=5e-3)
    if key and best["process"] == family:
        assert float(m[key]) == pytest.approx(fitted[key], rel=5e-3)
    assert parse_only("run", shlex.split(command)[2:]).ok
    assert f"rate = {m['rate']}" in text and "wait_time = " in text
    assert "KS ignores the gaps' correlation" in text
    assert (out / "trace-fit.md").read_text() == text
    assert (out / "trace-fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _candidate(process: str, law, params: dict) -> Candidate:
    return Candidate(process, 2, 0.0, law, {**params, "mean_s": law.mean})


@pytest.mark.parametrize("candidate, command, config, python", [
    (_candidate("gamma", Gamma(shape=0.62, mean=1 / 2.1), {"shape": 0.62}),
     "burstbench run --arrival gamma --shape 0.62 --rate 2.1", 'arrival = "gamma"\nshape = 0.62',
     "gamma(shape=0.62, rate=2.1)"),
    (_candidate("exponential", Exponential(mean=1 / 2.1), {}),
     "burstbench run --arrival exponential --rate 2.1", 'arrival = "exponential"', "poisson(rate=2.1)"),
    (_candidate("lognormal", FromDistribution("lognorm", {"s": 1.2}, mean=0.5), {"s": 1.2}),
     'burstbench run --distribution "lognorm(s=1.2)" --rate 2.1', 'distribution = "lognorm(s=1.2)"',
     'from_distribution("lognorm", s=1.2, rate=2.1)'),
    (_candidate("Weibull", FromDistribution("weibull_min", {"c": 0.7}, mean=0.5), {"c": 0.7}),
     'burstbench run --distribution "weibull_min(c=0.7)" --rate 2.1', 'distribution = "weibull_min(c=0.7)"',
     'from_distribution("weibull_min", c=0.7, rate=2.1)'),
    (_candidate("MMPP2", MMPP(rates=(1.5012, 20.04), dwell_s=(8.2, 1.1)),
                {"rates_per_s": [1.5012, 20.04], "dwell_s": [8.2, 1.1]}),
     'burstbench run --mmpp "calm 1.5/s for 8.2s, burst 20/s for 1.1s" --rate 2.1',
     'mmpp = "calm 1.5/s for 8.2s, burst 20/s for 1.1s"', "mmpp(rates=(1.5, 20), dwell=(8.2, 1.1), rate=2.1)"),
])
def test_the_command_config_and_locustfile_line_take_the_agreed_forms(candidate, command, config, python):
    how = reproduce(candidate, 2.1049)  # rounded to 3 significant digits
    assert how["command"] == command
    assert how["config"] == f"[load]\n{config}\nrate = 2.1"
    assert how["python"].splitlines()[-1] == f"wait_time = {python}"
    assert how["python"].startswith(f"from burstbench.arrivals import {python.split('(')[0]}\n")
    load = tomllib.loads(how["config"])["load"]
    assert load["rate"] == 2.1
    if "mmpp" in load:  # the texts parse back into the process they name
        assert parse_mmpp(load["mmpp"]) == MMPP(rates=(1.5, 20.0), dwell_s=(8.2, 1.1))
    if "distribution" in load:
        assert parse_distribution(load["distribution"], mean=0.5).params == {k: v for k, v in candidate.params.items()
                                                                              if k != "mean_s"}
    assert parse_only("run", shlex.split(how["command"])[2:]).ok


@pytest.mark.parametrize("rates, dwell_s", [((2.0, 40.0), (5.0, 1.0)), ((1.0, 1.2), (0.01, 300.0)),
                                            ((0.01, 500.0), (100.0, 0.002))])
def test_the_tree_likelihood_is_the_scaled_forward_recursion_and_the_plain_matrix_product(rates, dwell_s):
    """Gaps long against every rate included (e^{-r g} underflows for the busy state): no NaN, no -inf."""
    gaps = np.random.default_rng(5).gamma(0.4, 2.0, size=777)  # odd length: the tree's odd ones out
    tree, forward = loglik(gaps, rates, dwell_s), forward_loglik(gaps, rates, dwell_s)
    process = MMPP(rates=rates, dwell_s=dwell_s)
    lam = np.diag(rates)
    v, plain = process.stationary @ lam / process.rate, 0.0  # the definition, with scipy's expm
    for g in gaps:
        v = v @ linalg.expm((process.generator - lam) * g) @ lam
        plain += math.log(v.sum())
        v /= v.sum()
    assert math.isfinite(tree) and tree == pytest.approx(forward, rel=1e-9, abs=1e-8)
    assert tree == pytest.approx(plain, rel=1e-9, abs=1e-7)


def test_an_mmpp_fit_of_5000_gaps_takes_seconds_and_beats_poisson_where_it_should():
    gaps = MMPP(rates=(40.0, 2.0), dwell_s=(1.0, 5.0)).sample(5000, np.random.default_rng(3))
    started = time.perf_counter()
    fit = fit_mmpp2(gaps)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"{elapsed:.1f} s (about 0.3 s on a 2-core VM)"
    assert fit.converged and fit.process.rates[0] < fit.process.rates[1]
    assert fit.loglik >= loglik(gaps, (2.0, 40.0), (5.0, 1.0)) - 1e-6  # the maximum is at least the truth's
    poisson = float(np.sum(stats.expon(scale=gaps.mean()).logpdf(gaps)))
    assert fit.aic < 2 - 2 * poisson - 100


def test_too_few_gaps_leave_the_mmpp_out_with_a_note(tmp_path):
    gaps = np.random.default_rng(8).exponential(1.0, mmpp_fit.MIN_GAPS - 5)
    _, text, out = write_trace_fit(_write_trace(tmp_path / "short.csv", gaps), out=tmp_path / "fit")
    table = pd.read_csv(out / "trace-fit.csv")
    assert sorted(table["process"]) == sorted(["gamma", "lognormal", "Weibull", "exponential"])
    assert f"MMPP2 left out: {len(gaps)} positive gaps, fewer than the {mmpp_fit.MIN_GAPS}" in text


def test_zero_gaps_are_dropped_and_counted(tmp_path):
    gaps = Gamma(shape=0.5, mean=0.2).sample(3000, np.random.default_rng(4))
    path = _write_trace(tmp_path / "ms.csv", gaps, decimals=3)  # millisecond timestamps: ties, as real traces
    zeros = int(np.sum(np.diff(pd.read_csv(path)["timestamp"].to_numpy()) == 0))
    assert zeros > 20
    _, text, _ = write_trace_fit(path, out=tmp_path / "fit")
    assert f"Fitted to the {3000 - zeros} positive gaps ({zeros} zero gaps dropped)" in text


@pytest.mark.parametrize("stamps, message", [
    ([0, 0, 0, 5], "1 positive gaps; at least 2 are needed"),
    ([0, 1, 2, 3, 4, 5], "all 5 positive gaps are 1 s; a constant rate"),
])
def test_bad_traces_get_one_clear_line(tmp_path, capsys, stamps, message):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"timestamp": stamps}).to_csv(path, index=False)
    assert main(["trace-fit", str(path), "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"burstbench: --trace {path}: ") and message in err, err
