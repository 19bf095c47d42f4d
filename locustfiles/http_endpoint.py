"""Locustfile for any HTTP inference service: burstbench's traffic and records against your endpoint.

    locust -f locustfiles/http_endpoint.py --headless --host http://127.0.0.1:8000 \\
        --path /v1/classify --payload '{"inputs": "{text}"}' --dataset my_texts.csv --text-column body \\
        --scenario extreme --requests 500

    locust -f locustfiles/http_endpoint.py --headless --host http://127.0.0.1:8080 \\
        --preset kserve-v2 --model-name my-model --scenario steady --requests 200

The endpoint, payload, headers and response check are flags (``endpoint.py``); arrivals,
pacing, rows, run.json and Locust's outputs are the same as for the bundled service
(``core.py``), so ``burstbench report|compare`` read the run folder unchanged. ``--client requests``
sends with requests' HttpUser instead of FastHttpUser (rows then carry the client's clock).
"""
import locust  # noqa: F401  (before the rest: gevent's monkey-patching must come first)
from locust import events

from burstbench.locustfiles.plugin import PacedFastUser, PacedUser, install
from burstbench.locustfiles.endpoint import EndpointSpec, add_endpoint_arguments
from burstbench.locustfiles.outcomes import ResponseTooLarge, transport_error
from burstbench.locustfiles.request_guard import load_body
from burstbench.locustfiles.stream_target import StreamingTarget, cached_tokenizer

METADATA_TIMEOUT_S = 5


class HttpTarget:
    """Sends ``spec``'s method, path, rendered payload and headers; judges by its response check."""

    def __init__(self, spec: EndpointSpec, client: str = "fast"):
        self.spec = spec
        self.client = client
        self.endpoint = spec.path
        self.batch_size = spec.batch_size
        self._headers = spec.request_headers()
        self.streaming = spec.stream
        self.slo = spec.slo
        self.streaming_target = None if spec.stream is None else StreamingTarget(spec)
        self.prompts = None if self.streaming_target is None else self.streaming_target.prompts

    def request(self, user, texts, timeout_s):
        # The whole request is bounded by core's guard (request_guard), whichever the client.
        index = getattr(user, "burstbench_request_index", 0)
        fields = self.streaming_target.body_fields(index) if self.streaming_target is not None else {}
        return user.client.request(self.spec.method, self.spec.path, data=self.spec.body(texts, fields=fields),
                                   headers=self._headers, catch_response=True, name=self.spec.path,
                                   stream=self.streaming is not None and self.streaming.stream)

    def judge(self, resp):
        error = transport_error(resp)
        status = resp.status_code or 0
        if self.streaming is not None and self.streaming.stream and error is None and 200 <= status < 300 \
                and (self.spec.expect_status is None or status == self.spec.expect_status):
            return self.streaming_target.judge_stream(resp)
        try:
            if error is None:
                load_body(resp)  # a streamed request's error answer: read within --max-response-bytes
            body_text = resp.text or ""
        except ResponseTooLarge as err:
            error, body_text = err, ""
        except Exception:  # no response at all (connection error)
            body_text = ""
        ok, kind, failure = self.spec.judge(status, error, body_text)
        fields = self.streaming_target.judge_body(body_text) if ok and self.streaming is not None else {}
        return ok, kind, failure, fields

    def describe(self) -> dict:
        return {**self.spec.describe(), "client": self.client}

    def use_trace_lengths(self, trace) -> None:
        if self.streaming_target is None or not self.streaming.openai:
            raise ValueError("--trace-input-tokens and --trace-output-tokens set prompts and max_tokens: they need "
                             "an openai-* --preset")
        self.prompts = self.streaming_target.use_trace_lengths(trace)

    def request_fields(self, index: int) -> dict:
        return {} if self.streaming_target is None else self.streaming_target.request_fields(index)

    def streaming_info(self) -> dict | None:
        return None if self.streaming is None else self.streaming_target.describe()

    def target_info(self, host: str) -> dict:
        """The model and protocol as configured; for kserve-v2 also the server's model metadata."""
        info = {"model": self.spec.model_name, "preset": self.spec.preset, "url": f"{host}{self.spec.path}"}
        if self.spec.preset == "kserve-v2" and self.spec.model_name and self.spec.path.endswith("/infer"):
            import requests

            url = f"{host}{self.spec.path[:-len('/infer')]}"
            try:
                resp = requests.get(url, headers=self._headers, timeout=METADATA_TIMEOUT_S)
                info["metadata"] = resp.json() if resp.ok else {"error": f"HTTP {resp.status_code} from {url}"}
            except Exception as err:  # recorded, never required
                info["metadata"] = {"error": self.spec.scrub(f"{type(err).__name__}: {err}")[:300]}
        return info

    def scrub(self, text: str) -> str:
        return self.spec.scrub(text)


class ServiceUser(PacedFastUser):
    """FastHttpUser (geventhttpclient): socket-stamped over http://; https:// certificates are verified."""

    host = None  # --host is required
    insecure = False  # FastHttpUser skips certificate checks by default; requests' HttpUser did not


class RequestsServiceUser(PacedUser):
    """requests' HttpUser (--client requests): the client most Locust users know; the client's clock."""

    host = None
    abstract = True  # not one of the locustfile's classes of its own: --client chooses it (plugin.install)


@events.init.add_listener
def _load_tokenizer_early(environment, **_kwargs):
    """A worker builds its target when the master's start arrives, inside the schedule's lead: a tokenizer
    (a second or more) is loaded at start-up instead, from the command line that --processes shares."""
    o = environment.parsed_options
    if o is not None and o.worker and getattr(o, "tokenizer", None):
        try:
            cached_tokenizer(o.tokenizer)
        except ValueError:
            pass  # the run's own check reports it, in one line


install({"fast": ServiceUser, "requests": RequestsServiceUser},
        build_target=lambda options: HttpTarget(EndpointSpec.from_options(options), options.client),
        add_arguments=add_endpoint_arguments, check_host=True)
