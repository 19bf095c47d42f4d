"""burstbench/spec.py: every load parameter declared, typed and validated once; flags, files and run.json."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from burstbench.experiments.run import parse
from burstbench.spec import FIELDS, LoadSpec, SpecError, read_config, spec_from_file
from servers.fixtures import fastapi_server  # noqa: F401 (fixture)


def test_defaults_are_the_papers_steady_scenario():
    spec = LoadSpec.from_values({})
    assert (spec.scenario, spec.pacing, spec.seed, spec.users, spec.request_timeout) == ("steady", "arrival", 0, 10, 30)
    assert spec.process().mean == 2.0 and spec.run_label() == "steady"


def test_rate_is_the_inverse_of_the_mean_gap():
    by_rate = LoadSpec.from_values({"arrival": "gamma", "shape": "0.8", "rate": "20"})
    by_mean = LoadSpec.from_values({"arrival": "gamma", "shape": 0.8, "mean": 0.05})
    assert by_rate.process() == by_mean.process()
    assert by_rate.run_label() == "gamma-a0.8"


@pytest.mark.parametrize("values, message", [
    ({"mean": "-1"}, "--mean must be a number > 0 (got '-1')"),
    ({"rate": "0"}, "--rate must be a number of requests/s > 0 (got '0')"),
    ({"rate": "inf"}, "--rate must be a number of requests/s > 0 (got 'inf')"),
    ({"requests": "1.5"}, "--requests must be an integer >= 1 (got '1.5')"),
    ({"requests": 2.0}, "--requests must be an integer >= 1 (got 2.0)"),
    ({"seed": True}, "--seed must be an integer >= 0 (got True)"),
    ({"request_timeout": "7200"}, "--request-timeout must be a number of seconds in (0, 3600] (got '7200')"),
    ({"pacing": "closed"}, "--pacing must be one of arrival, think, concurrency (got 'closed')"),
    ({"scenario": "wild"}, "--scenario must be one of steady, moderate, extreme (got 'wild')"),
    ({"rate": 2, "mean": 0.5}, "give --rate or --mean, not both (rate = 1 / mean)"),
    ({"shape": "0.5"}, "--shape needs --arrival gamma (the scenarios fix their own shape)"),
    ({"arrival": "exponential", "shape": 2}, "--shape applies to --arrival gamma only (exponential has no shape)"),
    ({"trace": "t.csv", "arrival": "gamma"}, "--trace replays a file's arrival times: it cannot be combined with "
                                             "--arrival"),
    # the processes beyond gamma: one line naming the field and what is accepted, before any traffic
    ({"stages": "ramp 5 to 50 over 5m, hold 10m", "rate": 5}, "--stages sets the rate over time: drop --rate (write "
                                                              "the rates into the profile)"),
    ({"stages": "ramp 5 to over 5m"}, "--stages piece 1 'ramp 5 to over 5m' does not parse; accepted pieces: ramp A "
                                      "to B over D; hold R for D; hold D; step R for D; spike R for D; sine A to B "
                                      "period P for D (rates in requests/s, durations like 30s, 5m, 2h)"),
    ({"stages": "ramp 5 to 50 over 0s"}, "--stages segment 1: the duration must be a number of seconds > 0 (got 0)"),
    ({"stages": "hold 0 for 1m"}, "--stages must end at a rate > 0 (the last rate holds after the profile)"),
    ({"mmpp": "calm 5/s for 8s, burst 40/s for 0s"}, "--mmpp state 2: the dwell time must be a finite number > 0 "
                                                     "(got 0.0)"),
    ({"mmpp": "5/s for 8s", "arrival": "gamma"}, "--mmpp is a whole arrival process: it cannot be combined with "
                                                 "--arrival"),
    ({"distribution": "pareto(b=0.8)"}, "--distribution pareto with {'b': 0.8} has no finite mean (got inf), so it "
                                        "cannot be rescaled to a mean gap"),
    ({"distribution": "lognorm(s=1)", "shape": 2}, "--distribution gives the gap law itself: drop --shape"),
    ({"pacing": "concurrency", "rate": 5}, "--pacing concurrency keeps -u requests in flight and has no arrival "
                                           "process: drop --rate"),
    ({"pacing": "think", "mmpp": "5/s for 8s, 40/s for 2s"}, "--pacing think draws independent think times; "
                                                            "--mmpp needs --pacing arrival"),
    ({"rate": 0}, "--rate must be a number of requests/s > 0 (got 0)"),
    ({"workers": 4, "users": 2}, "--users must be at least --workers (4): each worker needs a user"),
    ({"workers": 2, "pacing": "think"}, "--workers needs --pacing arrival (one schedule split across workers)"),
])
def test_a_bad_value_names_its_flag_and_the_accepted_range(values, message):
    with pytest.raises(SpecError) as err:
        LoadSpec.from_values(values)
    assert str(err.value) == message


def test_the_same_error_names_the_files_key(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text("[load]\nshape = -1\narrival = 'gamma'\n")
    with pytest.raises(ValueError) as err:
        spec_from_file(plan)
    assert str(err.value) == f"{plan}: load.shape must be a number > 0 (got -1)"


def test_a_domain_rule_is_also_named_as_the_files_key(tmp_path):
    """burstbench.arrivals raises errors naming the parameter; the file's reader spells it as the file's key."""
    plan = tmp_path / "plan.toml"
    plan.write_text("[load]\narrival = 'gamma'\n")
    with pytest.raises(ValueError) as err:
        spec_from_file(plan)
    assert str(err.value) == (f"{plan}: load.arrival gamma needs load.shape, a number > 0 "
                              "(e.g. 0.8 for bursty traffic)")
    with pytest.raises(ValueError, match=r"^--arrival gamma needs --shape, a number > 0"):
        LoadSpec.from_values({"arrival": "gamma"}).process()


def test_flags_override_the_file_and_an_overridden_bad_value_is_blamed_on_the_flag(tmp_path):
    plan = tmp_path / "load.toml"
    plan.write_text("[load]\nscenario = 'extreme'\nrate = 10\nrequests = 40\nseed = 3\n"
                    "[target]\nhost = 'http://127.0.0.1:9'\npath = '/predict'\npreset = 'plain'\n")
    spec = spec_from_file(plan, {"seed": "5"})
    assert (spec.scenario, spec.rate, spec.requests, spec.seed) == ("extreme", 10.0, 40, 5)
    assert spec.host == "http://127.0.0.1:9" and spec.request == {"path": "/predict", "preset": "plain"}
    with pytest.raises(ValueError, match=r"^--requests must be an integer >= 1 \(got '0'\)$"):
        spec_from_file(plan, {"requests": "0"})


@pytest.mark.parametrize("text, message", [
    ("[load]\nrequets = 5\n", "load.requets is not a load parameter"),
    ("[loads]\nrequests = 5\n", r"\[loads\] is not a section of a load spec"),
    ("[load\n", "not valid TOML"),
])
def test_unknown_keys_and_broken_files_are_refused_with_the_file_named(tmp_path, text, message):
    plan = tmp_path / "bad.toml"
    plan.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        read_config(plan)
    assert str(plan) in str(err.value)


def test_a_run_json_without_a_spec_says_so(tmp_path):
    old = tmp_path / "run.json"
    old.write_text(json.dumps({"scenario": "steady"}))
    with pytest.raises(ValueError, match="has no 'spec'"):
        read_config(old)


def test_the_sectioned_form_round_trips():
    spec = LoadSpec.from_values({"arrival": "gamma", "shape": 1.5, "rate": 4, "requests": 9, "users": 3,
                                 "host": "http://127.0.0.1:1", "path": "/x", "header": ["A: b"]})
    doc = spec.to_dict()
    assert set(doc) == {"load", "target"} and doc["target"]["header"] == ["A: b"]
    assert LoadSpec.from_dict(json.loads(json.dumps(doc))) == spec


def test_locust_args_carry_every_non_default_plugin_field_and_nothing_of_the_harness():
    spec = LoadSpec.from_values({"arrival": "gamma", "shape": 0.8, "rate": 20, "users": 4, "workers": 2,
                                 "host": "http://127.0.0.1:1", "path": "/p"})
    args = spec.locust_args()
    assert args == ["--arrival", "gamma", "--shape", "0.8", "--rate", "20.0", "--path", "/p"]
    assert {f.name for f in FIELDS if not f.locust} == {"users", "workers", "host"}


def test_run_command_line_splits_spec_service_and_locusts_own_flags():
    spec, service, locust = parse(["extreme", "--rate", "20", "--requests", "50", "-t", "30s", "--port", "3999",
                                   "--", "--csv-full-history"])
    assert (spec.scenario, spec.rate, spec.requests, spec.host) == ("extreme", 20.0, 50, None)
    assert service["port"] == 3999 and locust == ["-t", "30s", "--csv-full-history"]


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "--scenario must be one of steady, moderate, extreme (or trace, with --trace FILE; got 'bogus')"),
    (["--host", "http://127.0.0.1:9", "--variant", "onnx-fp32", "--preset", "plain"], "--variant configures the "
     "bundled service"),
    (["--path", "/x"], "--path describes another service's endpoint: it needs --host"),
    (["--mean", "1", "--rate", "1"], "give --rate or --mean, not both"),
])
def test_run_refuses_bad_combinations_in_one_line(argv, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv)


@pytest.mark.integration
def test_burstbench_run_reports_a_bad_flag_before_any_traffic_or_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "burstbench", "run", "--rate", "-3", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "burstbench run: --rate must be a number of requests/s > 0 (got '-3')"
    assert list(tmp_path.iterdir()) == []


# -- the same run from flags, from a file, and from its own run.json ------------------------------------
def _run(args, cwd, url):
    out = subprocess.run([sys.executable, "-m", "burstbench", "run", *args], cwd=cwd, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = [p for p in (cwd / "results").iterdir() if p.name not in _run.seen]
    _run.seen.add(run_dir.name)
    import pandas as pd

    rows = pd.read_csv(run_dir / "requests.csv").sort_values("request_index")
    offsets = (rows["scheduled_epoch"] - rows["scheduled_epoch"].min()).to_numpy()
    return run_dir, offsets, rows["text_index"].tolist()


_run.seen = set()


@pytest.mark.load
def test_flags_a_config_file_and_the_runs_own_run_json_give_the_same_schedule_and_texts(fastapi_server, tmp_path):
    flags = ["--arrival", "gamma", "--shape", "0.8", "--rate", "40", "--requests", "30", "--seed", "7", "--users",
             "4", "--host", fastapi_server.url, "--preset", "plain", "--path", "/predict"]
    (tmp_path / "load.toml").write_text(
        "[load]\narrival = 'gamma'\nshape = 0.8\nrate = 40\nrequests = 30\nseed = 7\nusers = 4\n"
        f"[target]\nhost = '{fastapi_server.url}'\npreset = 'plain'\npath = '/predict'\n")
    first, offsets, texts = _run(flags, tmp_path, fastapi_server.url)
    _, from_file, file_texts = _run(["--config", "load.toml"], tmp_path, fastapi_server.url)
    _, repeated, repeated_texts = _run(["--config", str(first / "run.json")], tmp_path, fastapi_server.url)
    assert len(offsets) == 30 and offsets[-1] > 0
    # The seeded schedule: rows keep epochs to the microsecond, so two runs' offsets differ by rounding only.
    assert np.abs(from_file - offsets).max() <= 2e-6 and np.abs(repeated - offsets).max() <= 2e-6
    assert file_texts == texts and repeated_texts == texts
    spec = json.loads((first / "run.json").read_text())["spec"]
    assert spec["load"]["users"] == 4 and spec["target"] == {"host": fastapi_server.url, "preset": "plain",
                                                             "path": "/predict", "server_metrics": "/metrics"}
    _, other_seed, _ = _run(["--config", "load.toml", "--seed", "8"], tmp_path, fastapi_server.url)
    assert np.abs(other_seed - offsets).max() > 1e-3  # a flag overrides the file


def test_the_configuration_page_lists_every_field_as_declared():
    from conftest import REPO_ROOT
    from burstbench.spec import reference_table

    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    table = page.split("<!-- spec-table:start -->\n", 1)[1].split("\n<!-- spec-table:end -->", 1)[0]
    assert table.strip() == reference_table().strip(), "docs/configuration.md: paste burstbench.spec.reference_table()"


def test_header_values_are_never_recorded_and_a_repeat_asks_for_them(tmp_path):
    spec = LoadSpec.from_values({"host": "http://127.0.0.1:1", "path": "/p",
                                 "header": ["Authorization: Bearer s3cret-token", "X-Trace: ${TRACE}"]})
    record = spec.to_record()
    assert record["target"]["header"] == ["Authorization: <redacted>", "X-Trace: <redacted>"]
    assert "s3cret" not in json.dumps(record)
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"spec": record}))
    with pytest.raises(ValueError, match="give every --header again"):
        spec_from_file(run_json)
    again = spec_from_file(run_json, {"header": ["Authorization: Bearer ${TOKEN}"]})
    assert again.request["header"] == ["Authorization: Bearer ${TOKEN}"]
