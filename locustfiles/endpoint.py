"""What ``http.py`` sends to a service and how it judges the answer, from flags. No Locust here.

- A payload template: JSON with a placeholder. ``{text}`` is replaced by the text JSON-escaped:
  inside a JSON string (``"{text}"``, ``"Review: {text}"``) it becomes the string's content, as a
  bare value (``{"inputs": {text}}``) a whole JSON string. ``{texts}`` is a JSON list of
  ``--batch-size`` texts, for endpoints that take lists (``"data": {texts}``; ``"{texts}"`` too).
  The template is checked at start by substituting a sample text and parsing the result.
- Presets for the common protocols: ``plain``, ``kserve-v2``, ``openai-completions``, ``openai-chat``.
  Each sets method, path, payload and response check; explicit flags override any of them.
- Headers ``Name: value``, where ``${VAR}`` is read from the environment. Values are secrets: only
  names are recorded, and values are scrubbed from every failure text.
- A response check: the status (any 2xx by default) and optionally a JSON field (a dotted path such
  as ``choices.0.text``) that must be present, so that a 200 with an error body is a failure.
- Streaming (``--stream on``, the default of the ``openai-*`` presets and of ``sse``): the answer is read as
  server-sent events as they arrive (``streaming.py``). The ``openai-*`` presets set the body's ``stream``,
  ``stream_options.include_usage`` (``--stream-usage``), ``max_tokens`` (``--max-tokens``, or drawn per
  request from ``--output-tokens``) and, with ``--output-tokens``, ``min_tokens`` and ``ignore_eos`` so that
  the length asked for is the length generated (``--ignore-eos off`` for servers that refuse them).
  ``sse`` is any endpoint that streams: every ``data:`` event is one chunk, or the value at ``--chunk-field``.
- Prompts of a given length (``--input-tokens``, exact with ``--tokenizer``, else in words), and a
  ``--tokenizer`` to count tokens when the server reports no ``usage``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote

from burstbench.locustfiles.outcomes import check_response
from burstbench.locustfiles.stream_options import StreamOptions
from burstbench.slo import parse_slos

METHODS = ("POST", "PUT", "PATCH")
PRESETS = ("plain", "kserve-v2", "openai-completions", "openai-chat", "sse")
# Quotes, a backslash, control characters and non-ASCII: what breaks a template that is not escaped right.
SAMPLE_TEXT = 'a "quoted" sample \\ with a backslash,\na newline, a tab\t and non-ASCII: caf\u00e9 \u2713'
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
NOT_SECRET_HEADERS = {"content-type", "accept", "accept-encoding", "user-agent"}
MIN_SECRET_CHARS = 4  # shorter values would scrub ordinary words out of failure texts
DEFAULT_MAX_TOKENS = 16  # OpenAI's own default for /v1/completions
REDACTED = "<redacted>"
SECRET_FLAGS = ("--header",)  # their values are never written to run.json (argv) or logs


def add_endpoint_arguments(parser) -> None:
    g = parser.add_argument_group("burstbench endpoint", "what is sent to the service and what counts as success")
    g.add_argument("--preset", default=None,
                   help=f"payload preset: {', '.join(PRESETS)} (sets method, path, payload and check)")
    g.add_argument("--model-name", default=None, help="model name for the kserve-v2 and openai-* presets")
    g.add_argument("--method", default=None, help=f"HTTP method: {', '.join(METHODS)} (default POST)")
    g.add_argument("--path", default=None, help="endpoint path, e.g. /v1/classify")
    g.add_argument("--payload", default=None,
                   help='JSON template with {text} (one text) or {texts} (a JSON list of --batch-size texts), '
                        'e.g. \'{"inputs": "{text}"}\'')
    g.add_argument("--batch-size", type=str, default="1", help="texts per request, with a {texts} placeholder (>= 1)")
    # On the parser itself: only Locust's parser (not a group) can keep an argument out of the web UI.
    parser.add_argument("--header", action="append", default=[], include_in_web_ui=False,
                        help="extra header 'Name: value', repeatable; ${VAR} is read from the environment; "
                             "values are never written to run.json or logs")
    g.add_argument("--expect-status", default=None, help="status that counts as success (default: any 2xx)")
    g.add_argument("--expect-field", default=None,
                   help="dotted path that must be present in the JSON answer, e.g. outputs or choices.0.text")
    g.add_argument("--input-name", default="text", help="input tensor name for the kserve-v2 preset (default text)")
    g.add_argument("--max-tokens", type=str, default=str(DEFAULT_MAX_TOKENS),
                   help=f"max_tokens for the openai-* presets (default {DEFAULT_MAX_TOKENS})")
    s = parser.add_argument_group("burstbench streaming", "streamed answers: TTFT, inter-token latency, tokens, SLOs")
    s.add_argument("--stream", default=None,
                   help="on or off: read the answer as server-sent events (default on for the openai-* presets "
                        "and sse, off otherwise)")
    s.add_argument("--stream-usage", default="on",
                   help="on or off: ask for token counts in the last chunk (stream_options.include_usage; default on)")
    s.add_argument("--chunk-field", default=None,
                   help="--preset sse: the dotted JSON field of each event that holds one chunk "
                        "(default: every data event is one chunk)")
    s.add_argument("--tokenizer", default=None,
                   help="a tokenizer (local folder or hub id) to count tokens when the server reports no usage, "
                        "and to make --input-tokens exact")
    s.add_argument("--input-tokens", default=None,
                   help="synthetic prompts of this length instead of dataset texts: 128, uniform:64,256, "
                        "normal:512,128, lognormal:... (tokens with --tokenizer, else words)")
    s.add_argument("--output-tokens", default=None,
                   help="max_tokens drawn per request from this length distribution (same notation)")
    s.add_argument("--ignore-eos", default=None,
                   help="on or off: with --output-tokens, send ignore_eos and min_tokens so the length asked for "
                        "is generated (default on)")
    s.add_argument("--slo", action="append", default=[],
                   help="a service level objective METRIC=MS, repeatable: ttft_ms, tpot_ms, latency_ms, "
                        "itl_p<NN>_ms (a request's own ITL percentile), itl_max_ms (goodput: the share meeting all)")


# -- payload templates ------------------------------------------------------------------
@dataclass(frozen=True)
class PayloadTemplate:
    """A JSON template compiled into literal pieces and placeholder slots; ``render`` is a join."""

    source: str
    pieces: tuple  # str literals and ("text-in-string" | "text-value" | "texts-value",) slots
    placeholder: str  # "{text}" or "{texts}"

    @classmethod
    def compile(cls, source: str, flag: str = "--payload") -> "PayloadTemplate":
        pieces, literal, in_string, i = [], [], False, 0
        used = set()
        while i < len(source):
            for token in ("{texts}", "{text}"):
                if source.startswith(token, i):
                    break
            else:
                token = None
            if token is None:
                ch = source[i]
                literal.append(ch)
                if in_string and ch == "\\" and i + 1 < len(source):
                    literal.append(source[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    in_string = not in_string
                i += 1
                continue
            used.add(token)
            end = i + len(token)
            if token == "{text}":
                slot = "text-in-string" if in_string else "text-value"
            elif not in_string:
                slot = "texts-value"
            elif literal and literal[-1] == '"' and source[end:end + 1] == '"':
                literal.pop()  # "{texts}" as a whole string: the list replaces the quotes too
                slot, in_string, end = "texts-value", False, end + 1
            else:
                raise ValueError(f"{flag}: {{texts}} stands for a JSON list and must be a whole value, "
                                 'e.g. "data": {texts} (a single text inside a string is {text})')
            pieces.append("".join(literal))
            pieces.append((slot,))
            literal = []
            i = end
        pieces.append("".join(literal))
        if not used:
            raise ValueError(f"{flag} has no {{text}} or {{texts}} placeholder for the text (got {source!r})")
        if len(used) > 1:
            raise ValueError(f"{flag} uses both {{text}} and {{texts}}: use {{text}} for one text per request "
                             "or {texts} for a list of --batch-size texts")
        return cls(source=source, pieces=tuple(pieces), placeholder=used.pop())

    def render(self, texts: list[str]) -> str:
        out = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece[0] == "text-in-string":
                out.append(json.dumps(texts[0], ensure_ascii=False)[1:-1])
            elif piece[0] == "text-value":
                out.append(json.dumps(texts[0], ensure_ascii=False))
            else:
                out.append(json.dumps(list(texts), ensure_ascii=False))
        return "".join(out)

    def check(self, batch_size: int, flag: str = "--payload") -> None:
        """Substitute sample texts and parse: a template that is not JSON stops here, not in 1,000 failures."""
        if self.placeholder == "{text}" and batch_size != 1:
            raise ValueError(f"--batch-size {batch_size} needs a {{texts}} placeholder in {flag} "
                             "({text} carries one text per request)")
        samples = [SAMPLE_TEXT] + [f"sample {k}" for k in range(1, batch_size)]
        rendered = self.render(samples)
        try:
            body = json.loads(rendered)
        except ValueError as err:
            raise ValueError(f"{flag} is not valid JSON after substituting a sample text ({err.msg} at character "
                             f"{err.pos} of the result; template {self.source[:200]!r})") from None
        if not any(SAMPLE_TEXT in s for s in _strings(body)):
            raise ValueError(f"{flag}: the sample text does not come through intact after substitution "
                             f"(got {rendered[:200]!r}); put {{text}} alone in a JSON string or as a value")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# -- presets -----------------------------------------------------------------------------
def preset_fields(name: str, model: str | None, input_name: str, max_tokens: int) -> dict:
    """method, path, payload, expect_field of a preset; a missing model name is None in the fields that need it."""
    m = json.dumps(model)
    if name == "plain":
        return {"method": "POST", "path": "/predict", "payload": '{"text": "{text}"}', "expect_field": None}
    if name == "kserve-v2":  # KServe / Triton open inference protocol v2, BYTES tensor of texts
        return {"method": "POST", "path": None if model is None else f"/v2/models/{quote(model, safe='')}/infer",
                "payload": '{"inputs": [{"name": %s, "shape": [{batch}], "datatype": "BYTES", "data": {texts}}]}'
                           % json.dumps(input_name),
                "expect_field": "outputs"}
    # The openai-* bodies' max_tokens and stream fields are set per request (EndpointSpec.body_fields).
    if name == "openai-completions":
        return {"method": "POST", "path": "/v1/completions",
                "payload": None if model is None else '{"model": %s, "prompt": {prompt}}' % m,
                "expect_field": "choices.0.text"}
    if name == "openai-chat":
        return {"method": "POST", "path": "/v1/chat/completions",
                "payload": None if model is None else
                '{"model": %s, "messages": [{"role": "user", "content": "{text}"}]}' % m,
                "expect_field": "choices.0.message.content"}
    if name == "sse":  # any streaming endpoint: the path and payload are the user's
        return {"method": "POST", "path": None, "payload": None, "expect_field": None}
    raise ValueError(f"--preset must be one of {', '.join(PRESETS)} (got {name!r})")


def _preset_payload(name: str, payload: str, batch_size: int) -> str:
    """Fill the preset's batch-dependent parts: a list of texts where the protocol takes one."""
    if name == "kserve-v2":
        return payload.replace("{batch}", str(batch_size))
    if name == "openai-completions":  # "prompt" is a string, or a list of strings for a batch
        return payload.replace("{prompt}", '"{text}"' if batch_size == 1 else "{texts}")
    if batch_size != 1:
        raise ValueError(f"--preset {name} sends one text per request: --batch-size must be 1 "
                         "(or give a --payload with {texts})")
    return payload


# -- headers -----------------------------------------------------------------------------
def parse_header(raw: str, environ: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """(name, value, env values used) from 'Name: value'; never echoes the value in an error."""
    name, sep, value = raw.partition(":")
    name = name.strip()
    if not sep or not HEADER_NAME.match(name):
        raise ValueError("--header must look like 'Name: value' (a header name, a colon, then the value; "
                         "use ${VAR} to read a secret from the environment)")
    used = []

    def substitute(match):
        var = match.group(1)
        if not environ.get(var):
            raise ValueError(f"--header {name}: environment variable {var} is not set (or is empty)")
        used.append(environ[var])
        return environ[var]

    value = ENV_REFERENCE.sub(substitute, value.strip())
    if "\n" in value or "\r" in value:
        raise ValueError(f"--header {name}: the value must be one line")
    return name, value, used


def redact_argv(argv: list[str]) -> list[str]:
    """argv for run.json: the value of every secret-bearing flag reduced to its header name."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(_redact_header(arg))
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        if flag in SECRET_FLAGS and eq:
            out.append(f"{flag}={_redact_header(value)}")
        else:
            out.append(arg)
            hide_next = arg in SECRET_FLAGS
    return out


def _redact_header(raw: str) -> str:
    name, sep, _ = raw.partition(":")
    return f"{name.strip()}: {REDACTED}" if sep else REDACTED


# -- the whole endpoint --------------------------------------------------------------------
@dataclass(frozen=True)
class EndpointSpec:
    method: str
    path: str
    template: PayloadTemplate
    batch_size: int
    headers: dict
    secrets: tuple
    expect_status: int | None
    expect_field: tuple
    preset: str | None
    model_name: str | None
    stream: "StreamOptions | None" = None  # None: the answer is one JSON body
    slo: dict | None = None                # --slo: METRIC -> bound in ms (burstbench.slo)

    @classmethod
    def from_options(cls, o, environ: Mapping[str, str] | None = None) -> "EndpointSpec":
        environ = os.environ if environ is None else environ
        batch_size = _int_flag("--batch-size", o.batch_size, 1, 100_000)
        max_tokens = _int_flag("--max-tokens", o.max_tokens, 1, 10_000_000)
        fields = {"method": "POST", "path": None, "payload": None, "expect_field": None}
        if o.preset is not None:
            fields = preset_fields(o.preset, o.model_name, o.input_name, max_tokens)
            if o.model_name is None and o.preset != "sse":
                needing = [f for f in ("path", "payload") if fields[f] is None and getattr(o, f) is None]
                if needing:
                    raise ValueError(f"--preset {o.preset} needs --model-name (the model's name on the server)")
            if o.payload is None and fields["payload"] is not None:
                fields["payload"] = _preset_payload(o.preset, fields["payload"], batch_size)
        method = (o.method or fields["method"]).upper()
        if method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)} (got {o.method!r})")
        path = o.path if o.path is not None else fields["path"]
        if path is None:
            raise ValueError(f"--path is required (the endpoint, e.g. /v1/classify), or choose a --preset "
                             f"({', '.join(PRESETS)})")
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"--path must start with / and contain no spaces (got {path!r})")
        payload = o.payload if o.payload is not None else fields["payload"]
        if payload is None:
            raise ValueError("--payload is required: a JSON template with {text}, e.g. '{\"inputs\": \"{text}\"}', "
                             f"or choose a --preset ({', '.join(PRESETS)})")
        stream = StreamOptions.from_options(o, max_tokens, batch_size)
        template = PayloadTemplate.compile(payload)
        template.check(batch_size)
        headers, secrets = {}, []
        for raw in o.header or []:
            name, value, used = parse_header(raw, environ)
            headers[name] = value
            secrets += used
            if name.lower() not in NOT_SECRET_HEADERS:
                secrets.append(value)
        expect_field = o.expect_field if o.expect_field is not None else fields["expect_field"]
        return cls(
            method=method,
            path=path,
            template=template,
            batch_size=batch_size,
            headers=headers,
            secrets=tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)),
            expect_status=_expect_status(o.expect_status),
            expect_field=tuple(expect_field.split(".")) if expect_field else (),
            preset=o.preset,
            model_name=o.model_name,
            stream=stream,
            slo=_slos(o, stream),
        )

    def body(self, texts: list[str], index: int = 0, fields: dict | None = None) -> bytes:
        """The rendered template; the openai-* presets' per-request ``fields`` (default: request ``index``'s)
        set on the rendered JSON."""
        rendered = self.template.render(texts)
        fields = (self.stream.body_fields(index) if self.stream is not None else {}) if fields is None else fields
        if fields:
            rendered = json.dumps({**json.loads(rendered), **fields}, ensure_ascii=False)
        return rendered.encode("utf-8")

    def request_headers(self) -> dict:
        """Content-Type JSON unless the user set their own."""
        if any(name.lower() == "content-type" for name in self.headers):
            return dict(self.headers)
        return {"Content-Type": "application/json", **self.headers}

    def judge(self, status: int, error: BaseException | None, body_text: str) -> tuple[bool, str, str]:
        # The failure text is scrubbed once, for every target, by core.Run.send.
        return check_response(status, error, body_text, self.expect_status, self.expect_field)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def describe(self) -> dict:
        """For run.json: everything but header values."""
        return {
            "method": self.method,
            "path": self.path,
            "preset": self.preset,
            "model_name": self.model_name,
            "payload_template": self.template.source,
            "batch_size": self.batch_size,
            "headers": sorted(self.headers),  # names only: values are secrets
            "expect_status": self.expect_status if self.expect_status is not None else "2xx",
            "expect_field": ".".join(self.expect_field) or None,
            **({} if self.stream is None else {"body_fields": self.stream.describe_fields()}),
        }


def _int_flag(flag: str, raw, low: int, high: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(f"{flag} must be an integer in [{low}, {high}] (got {raw!r})")
    return value


def _expect_status(raw) -> int | None:
    if raw is None or str(raw).lower() == "2xx":
        return None
    return _int_flag("--expect-status", raw, 100, 599)


def _slos(o, stream) -> dict | None:
    """--slo, parsed; a streaming measure's SLO needs a streamed answer (there is no TTFT without one)."""
    slos = parse_slos(list(getattr(o, "slo", None) or []))
    streamed_only = [m for m in slos if m != "latency_ms"]
    if streamed_only and (stream is None or not stream.stream):
        raise ValueError(f"--slo {streamed_only[0]} needs a streamed answer (--stream on with an openai-* or sse "
                         "preset); without one only latency_ms applies")
    return slos or None
