"""What the openai-* and sse endpoints ask for and how their answers are read: ``--stream``, ``--max-tokens`` or
``--output-tokens`` per request, ``--input-tokens`` prompts, ``--tokenizer``, ``--chunk-field`` (flags of
``endpoint.py``, validated here once, before any traffic). No Locust here.
"""
from __future__ import annotations

from dataclasses import dataclass

OPENAI_PRESETS = ("openai-completions", "openai-chat")
STREAMING_PRESETS = (*OPENAI_PRESETS, "sse")  # streamed by default
ON_OFF = ("on", "off")


def _on_off(flag: str, raw, default: bool) -> bool:
    if raw is None:
        return default
    if str(raw).lower() not in ON_OFF:
        raise ValueError(f"{flag} must be on or off (got {raw!r})")
    return str(raw).lower() == "on"


@dataclass(frozen=True)
class StreamOptions:
    """How answers are read (streamed or not) and what the openai-* bodies ask for, per request.

    Kept for every openai-* and sse endpoint, streamed or not: the non-streaming answer's ``usage`` and
    finish reason are read too, and the per-request ``max_tokens`` is set either way.
    """

    stream: bool
    protocol: str             # chat, completions or sse
    openai: bool              # an openai-* preset: body fields are set per request
    include_usage: bool
    chunk_field: tuple
    max_tokens: int
    output_lengths: object    # prompts.LengthDistribution or None
    ignore_eos: bool
    input_lengths: object     # prompts.LengthDistribution or None
    tokenizer_name: str | None

    @classmethod
    def from_options(cls, o, max_tokens: int, batch_size: int) -> "StreamOptions | None":
        preset = o.preset
        stream = _on_off("--stream", getattr(o, "stream", None), preset in STREAMING_PRESETS)
        given = [f for f in ("chunk_field", "input_tokens", "output_tokens", "ignore_eos", "tokenizer")
                 if getattr(o, f, None) is not None]
        if preset not in STREAMING_PRESETS and not stream:
            if given:
                raise ValueError(f"--{given[0].replace('_', '-')} applies to the openai-* and sse presets "
                                 "(or --stream on)")
            return None
        if preset is not None and preset not in STREAMING_PRESETS:
            raise ValueError(f"--stream on reads server-sent events: use --preset sse (any streaming endpoint) "
                             f"or an openai-* preset, not {preset}")
        if getattr(o, "chunk_field", None) is not None and preset != "sse" and preset is not None:
            raise ValueError("--chunk-field applies to --preset sse (the openai-* presets know their chunks)")
        protocol = {"openai-chat": "chat", "openai-completions": "completions"}.get(preset, "sse")
        openai = preset in OPENAI_PRESETS
        if not openai and (getattr(o, "output_tokens", None) or getattr(o, "ignore_eos", None)):
            raise ValueError("--output-tokens and --ignore-eos set the openai-* presets' max_tokens: "
                             "with --preset sse put the length into --payload")
        output_lengths = input_lengths = None
        try:
            seed = int(getattr(o, "seed", 0) or 0)
        except (TypeError, ValueError):
            seed = 0  # the run's own check names a bad --seed
        if getattr(o, "output_tokens", None):
            from burstbench.locustfiles.prompts import parse_length
            output_lengths = parse_length(o.output_tokens, "--output-tokens", seed)
        if getattr(o, "input_tokens", None):
            from burstbench.locustfiles.prompts import parse_length
            if batch_size != 1:
                raise ValueError("--input-tokens makes one prompt per request: --batch-size must be 1")
            input_lengths = parse_length(o.input_tokens, "--input-tokens", seed)
        return cls(stream=stream, protocol=protocol, openai=openai,
                   include_usage=_on_off("--stream-usage", getattr(o, "stream_usage", None), True),
                   chunk_field=tuple(o.chunk_field.split(".")) if getattr(o, "chunk_field", None) else (),
                   max_tokens=max_tokens, output_lengths=output_lengths,
                   ignore_eos=_on_off("--ignore-eos", getattr(o, "ignore_eos", None), output_lengths is not None),
                   input_lengths=input_lengths, tokenizer_name=getattr(o, "tokenizer", None))

    def requested_output_tokens(self, index: int) -> int | None:
        if not self.openai:
            return None
        return self.output_lengths.draw(index) if self.output_lengths is not None else self.max_tokens

    def body_fields(self, index: int, n: int | None = None) -> dict:
        """Request ``index``'s stream and length fields; ``n`` (a trace's length) replaces the drawn max_tokens."""
        if not self.openai:
            return {}
        n = self.requested_output_tokens(index) if n is None else n
        fields = {"max_tokens": n, "stream": self.stream}
        if self.stream and self.include_usage:
            fields["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            fields.update(min_tokens=n, ignore_eos=True)  # vLLM's and SGLang's names; TGI and others ignore them
        return fields

    def describe_fields(self) -> dict:
        out = {"stream": self.stream, "protocol": self.protocol}
        if self.openai:
            out["max_tokens"] = (self.output_lengths.describe() if self.output_lengths is not None
                                 else self.max_tokens)
            out["stream_options.include_usage"] = self.stream and self.include_usage
            out["ignore_eos_and_min_tokens"] = self.ignore_eos
        if self.chunk_field:
            out["chunk_field"] = ".".join(self.chunk_field)
        return out
