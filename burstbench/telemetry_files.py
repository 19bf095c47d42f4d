"""What the telemetry sidecar writes into a run folder, and how each file is laid out (no heavy imports).

The sidecar (``burstbench.telemetry``) samples, every ``every_s`` seconds on one clock:

* ``server_metrics.csv``: every sample of the target's Prometheus endpoint, one tidy row each:
  ``epoch`` (when that scrape's answer was read, epoch seconds), ``metric`` (the sample's name as exposed:
  ``bentoml_service_request_total``, ``..._bucket``, ``..._sum``, ``..._count``), ``type`` (its family's
  type: counter, gauge, histogram, summary, info, stateset, gaugehistogram or unknown), ``labels`` (a JSON
  object, keys sorted, ``{}`` when none; a histogram bucket's ``le`` is one of them) and ``value``.
* ``processes.csv``: the CPU and memory of the service's whole process tree (``role`` service) and of each
  load process (``role`` load), one row per process (tree) per sample: ``epoch``, ``role``, ``pid`` (the
  tree's root), ``name``, ``processes`` (in the tree), ``cpu_percent`` (user + system CPU of the tree over
  the interval, % of one core: 200 is two cores busy), ``rss_mb`` (summed over the tree), ``interval_s``.
* ``gpu.csv``: per NVIDIA GPU (NVML) per sample: ``epoch``, ``gpu`` (index), ``name``,
  ``utilization_percent``, ``memory_used_mb``, ``memory_total_mb``, ``power_w``, ``temperature_c``.
  No GPU: no file, and ``telemetry.json`` says why (absent, never zeros).
* ``telemetry.json``: what was collected and what not, written when the sidecar stops; the load process
  copies it into run.json as ``telemetry``. See ``summary_template``.
"""
from __future__ import annotations

SERVER_METRICS_FILE = "server_metrics.csv"
SERVER_METRICS_COLUMNS = ("epoch", "metric", "type", "labels", "value")
PROCESSES_FILE = "processes.csv"
PROCESS_COLUMNS = ("epoch", "role", "pid", "name", "processes", "cpu_percent", "rss_mb", "interval_s")
GPU_FILE = "gpu.csv"
GPU_COLUMNS = ("epoch", "gpu", "name", "utilization_percent", "memory_used_mb", "memory_total_mb", "power_w",
               "temperature_c")
TELEMETRY_FILE = "telemetry.json"

DEFAULT_METRICS_PATH = "/metrics"
DEFAULT_EVERY_S = 1.0
MIN_EVERY_S = 0.25
MAX_EVERY_S = 60.0
NO_SERVER_METRICS = "no server metrics"  # the one line a target without a (parsable) endpoint gets


def summary_template(every_s: float) -> dict:
    """telemetry.json's shape (the sidecar fills it in).

    ``server_metrics.status``: ``ok`` (at least one scrape parsed), ``none`` (no scrape ever did: ``note``
    holds the one line, starting with ``no server metrics``) or ``off`` (not asked for). ``failed`` counts
    the scrapes that did not parse (a server restarting), ``errors`` the first few reasons.
    ``processes.service``: None when no service on this machine was named; else ``pid``, ``port``,
    ``named_by`` (pid or port), ``status`` (ok, or gone: the process ended and none replaced it).
    ``processes.peak``: per role (service, load) the highest ``cpu_percent`` and ``rss_mb`` of any sample
    (the closing lines; the analysis reads the file). ``gpu.status``: ``present`` with ``devices``, or
    ``absent`` with ``reason``. ``sidecar``: its own ``cpu_s``, ``wall_s`` and ``cpu_percent`` (start-up
    included). telemetry.json also says ``final``: false while the run goes on, true once it stopped.
    """
    return {
        "every_s": every_s,
        "server_metrics": {"url": None, "status": "off", "scrapes": 0, "failed": 0, "samples": 0, "note": None,
                           "errors": [], "file": None},
        "processes": {"service": None, "load": [], "cpu_count": None, "memory_total_mb": None, "file": None},
        "gpu": {"status": "absent", "reason": None, "devices": [], "file": None},
    }
