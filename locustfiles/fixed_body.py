"""Locustfile for a trivial endpoint (``GET /`` answering a fixed body): the load generator's own limits.

    locust -f locustfiles/fixed_body.py --headless --host http://127.0.0.1:8080 \\
        --arrival exponential --mean 0.001 --requests 5000 -u 64 -r 1000 FixedBodyUser

Two user classes, chosen by Locust's user-class argument (``FixedBodyUser`` when none is named):

- ``FixedBodyUser``: burstbench's arrival pacing on Locust's FastHttpUser (``PacedFastUser``): one
  schedule of send times, fixed ahead from the seed; its rows say how late each send went out.
- ``ConstantThroughputUser``: Locust's own pacing, ``constant_throughput(1 / (mean * users))`` per
  user, so that all users together aim at the same mean rate. It is a closed loop (it sleeps after
  each response), so it needs ``--pacing think``; run.json says ``"wait_time": "constant_throughput"``.

Every request is recorded by the same machinery as the other locustfiles (``core.py``), so
``sent = ok + failed`` holds and ``burstbench`` reads the run folder.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust import constant_throughput, events

import sys

from burstbench.locustfiles.plugin import PacedFastUser, install
from burstbench.locustfiles.outcomes import check_response, transport_error

ROUTE = "/"
EXPECTED_STATUS = 200
REQUEST_HEADER = "X-Burstbench-Request"


class FixedBodyTarget:
    """``GET /``; any answer but a 200 is a failure. The texts are ignored: the body is fixed."""

    endpoint = ROUTE
    batch_size = 1

    def request(self, user, texts, timeout_s):
        # --request-timeout bounds the whole request (core's guard, request_guard.py), not each read.
        # The request index travels in a header, so an observer on the wire can pair it with its row.
        return user.client.get(ROUTE, catch_response=True, name=ROUTE,
                               headers={REQUEST_HEADER: str(user.burstbench_request_index)})

    def judge(self, resp):
        status, error = resp.status_code or 0, transport_error(resp)
        body_text = "" if error is not None or status == EXPECTED_STATUS else (resp.text or "")
        ok, kind, failure = check_response(status, error, body_text, EXPECTED_STATUS, ())
        return ok, kind, failure, {}

    def describe(self) -> dict:
        return {"method": "GET", "path": ROUTE, "preset": "fixed-body", "payload_template": None,
                "batch_size": 1, "headers": [], "expect_status": EXPECTED_STATUS, "expect_field": None}

    def target_info(self, host: str) -> dict:
        return {"kind": "fixed body (generator benchmark)", "url": f"{host}{ROUTE}"}

    def scrub(self, text: str) -> str:
        return text  # this target sends no secret


class FixedBodyUser(PacedFastUser):
    host = "http://127.0.0.1:8080"
    uses_cookies = False  # a fixed body sets none: skip the cookie jar on every request (about 5 % of the CPU)


class ConstantThroughputUser(FixedBodyUser):
    """Locust's own pacing (its wait time is set at init, from --mean and the number of users)."""


@events.init.add_listener
def _choose_user_class(environment, **_kwargs):
    """Before ``install`` builds the run: one user class at a time, with a pacing it can stand for."""
    o = environment.parsed_options
    if o is None:
        return
    if not o.user_classes:  # both classes are concrete: without a name, Locust would mix them
        environment.user_classes = [FixedBodyUser]
    names = {cls.__name__ for cls in environment.user_classes}
    if names == {"FixedBodyUser", "ConstantThroughputUser"}:
        sys.exit("burstbench: name one user class, FixedBodyUser (arrival schedule) or ConstantThroughputUser "
                 "(Locust's constant_throughput), not both")
    if "ConstantThroughputUser" in names and o.pacing != "think":  # (concurrency has no rate to aim at)
        sys.exit("burstbench: ConstantThroughputUser paces itself with Locust's constant_throughput, a closed loop: "
                 f"run it with --pacing think (got --pacing {o.pacing})")


install(FixedBodyUser, build_target=lambda _options: FixedBodyTarget())


@events.init.add_listener
def _pace_constant_throughput(environment, **_kwargs):
    """After ``install`` built the run: all users together aim at the run's mean rate."""
    run = FixedBodyUser.burstbench_run
    if run is None or ConstantThroughputUser not in environment.user_classes:
        return
    users = max(1, int(environment.parsed_options.num_users or 1))
    per_user_per_s = 1.0 / (run.plan.distribution.mean * users)
    ConstantThroughputUser.wait_time = constant_throughput(per_user_per_s)
    # run.json says which pacing sent the traffic (the record's wait_time, kept on every rewrite).
    run.wait_time_info = {"kind": "constant_throughput", "per_user_per_s": per_user_per_s, "users": users,
                          "aimed_rate_per_s": per_user_per_s * users,
                          "note": "Locust's own pacing; 'distribution' gives only the aimed mean rate and "
                                  "'think_s' is not a drawn think time"}
    run.write_run_json("running")
