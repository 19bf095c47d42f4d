"""burstbench: load-test ML model-serving endpoints with realistic, bursty traffic, built on Locust.

One import package. Its subpackages are the repository's top-level folders:
``burstbench.arrivals`` (arrival processes, Locust wait times; no Locust import), ``burstbench.locustfiles``
(the Locust plugin and the shipped locustfiles), ``burstbench.analysis`` (tables, figures, reports),
``burstbench.service`` (the bundled BentoML service; needs the ``[service]`` extra),
``burstbench.experiments`` (programs that run whole experiments) and ``burstbench.resilience``.
The ``burstbench`` command (``burstbench.cli``) is the front door to all of them.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("burstbench")
except PackageNotFoundError:  # pragma: no cover - imported from a tree that was never installed
    __version__ = "0.0.0+unknown"
