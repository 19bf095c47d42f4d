"""The reference paper's three load scenarios, all with a mean gap of 2 s (0.5 requests/s).

Note the paper's naming: "moderate" (gamma shape 1.2, CV 0.91) is *less* variable than
Poisson; only "extreme" (shape 0.8, CV 1.12) is burstier. Print the CV beside the name.
"""
from __future__ import annotations

from burstbench.errors import ParameterError

from .distributions import ArrivalDistribution, Exponential, Gamma

PAPER_MEAN_GAP_S = 2.0

SCENARIOS: dict[str, ArrivalDistribution] = {
    "steady": Exponential(mean=PAPER_MEAN_GAP_S),
    "moderate": Gamma(shape=1.2, mean=PAPER_MEAN_GAP_S),
    "extreme": Gamma(shape=0.8, mean=PAPER_MEAN_GAP_S),
}


def scenario(name: str, mean: float | None = None) -> ArrivalDistribution:
    """The named scenario's distribution, optionally with another mean gap (same shape)."""
    try:
        dist = SCENARIOS[name]
    except KeyError:
        raise ParameterError(f"{{scenario}} must be one of {', '.join(SCENARIOS)} (got {name!r})", "scenario") from None
    if mean is None:
        return dist
    return Exponential(mean=mean) if dist.kind == "exponential" else Gamma(shape=dist.shape, mean=mean)


def label(name: str, dist: ArrivalDistribution) -> str:
    """``extreme: gamma(a=0.8, mean=2.00s, cv=1.12)`` so nobody reads a name without its CV."""
    return f"{name}: {dist}"
