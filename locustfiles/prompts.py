"""Synthetic prompts and output lengths shaped like LLM traffic: token-length distributions drawn per request.

Notation (``--input-tokens``, ``--output-tokens``, or the same keys in a config file), lengths in tokens:

    fixed:128          or just 128      every request the same length
    uniform:64,256                      an integer in [64, 256], both ends included
    normal:512,128                      mean 512, standard deviation 128
    lognormal:512,256                   mean 512, standard deviation 256 (right-skewed, as real prompts are)
    normal:512,128,min=16,max=2048      either law clipped to [min, max]

For ``normal`` and ``lognormal`` the two numbers are the mean and the standard deviation *of the length
itself*, in tokens, as GuideLLM (``prompt_tokens``, ``prompt_tokens_stdev``) and AIPerf
(``--synthetic-input-tokens-mean``, ``--synthetic-input-tokens-stddev``) give them for their normal; so
``normal:512,128`` and ``lognormal:512,128`` have the same mean and spread and differ only in shape.
The log-space parameters are derived in one place (``_lognormal_params``). vLLM's ``--random-input-len L
--random-range-ratio r`` is ``uniform:L*(1-r),L*(1+r)``.

A draw is rounded to the nearest integer and then clipped to [max(1, min), max]: drawn lengths are integers
>= 1, and clipping piles the clipped mass onto the bounds (as GuideLLM's min/max and AIPerf's floor of 1
clamp); it does not redraw. Unlike GuideLLM, no bounds are implied (it clamps to mean +- 5 sd by default).

Draws are per request index: request k's length depends on (seed, stream, k) only, never on which user,
process or worker sends it or on what was drawn before, so distributed workers and reruns agree. Each
stream (``input_tokens``, ``output_tokens``, the prompts' start offsets) has its own generator.
"""
from __future__ import annotations

import math
import os
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from burstbench.arrivals.schedule import check_seed
from burstbench.errors import ParameterError

KINDS = ("fixed", "uniform", "normal", "lognormal")
FORMS = ("fixed:N (or N), uniform:LOW,HIGH (both included), normal:MEAN,SD, lognormal:MEAN,SD "
         "(mean and sd of the length in tokens), the last two optionally clipped with ,min=A,max=B; "
         "N, LOW, HIGH, A, B integers >= 1 with LOW <= HIGH and A <= B; MEAN > 0, SD >= 0")
# Spawn keys of this module's random streams, apart from burstbench.arrivals.schedule.STREAMS (0-2).
STREAMS = {"input_tokens": 16, "output_tokens": 17, "prompt_start": 18}
BLOCK = 1024  # draws are made BLOCK indices at a time: index k is element k % BLOCK of block k // BLOCK
WORDS_PER_TOKEN_NOTE = "a word is about 1.3 tokens for GPT-style BPE tokenizers"
MAX_ADJUSTMENTS = 4  # widths tried for a decoded token window to re-encode to exactly n tokens ...
MAX_SHIFTS = 4  # ... from each of this many start positions
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?")


def _name(flag: str) -> str:
    """``--input-tokens``, ``input-tokens`` and ``input_tokens`` all name the parameter ``input_tokens``."""
    return flag.strip().lstrip("-").replace("-", "_")


def _stream_key(stream: str) -> int:
    """A named stream's spawn key: a fixed one for this module's streams, else a 32-bit hash clear of them."""
    return STREAMS.get(stream, (zlib.crc32(stream.encode()) | 1 << 31) & 0xFFFFFFFF)


def _rng(seed: int, stream: str, *sub: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_stream_key(stream), *sub)))


def _lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    """(mu, sigma) of the log, for a lognormal length with this mean and sd (of the length)."""
    sigma2 = math.log1p((sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


@dataclass(frozen=True)
class LengthDistribution:
    """A law of integer lengths >= 1, with the seed and stream that make ``draw(k)`` one number per request k.

    ``params``: (n,) for fixed, (low, high) for uniform, (mean, sd) of the length for normal and lognormal.
    ``low``/``high``: the clipping bounds (``high`` None: none above); ``low`` is at least 1.
    """

    kind: str
    params: tuple[float, ...]
    low: int = 1
    high: int | None = None
    seed: int = 0
    stream: str = "input_tokens"

    def with_seed(self, seed: int) -> "LengthDistribution":
        return LengthDistribution(self.kind, self.params, self.low, self.high, check_seed(seed), self.stream)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` lengths (int64) drawn with ``rng``: the law itself, without the per-index seeding."""
        if self.kind == "fixed":
            return np.full(n, int(self.params[0]), dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(int(self.params[0]), int(self.params[1]), size=n, endpoint=True, dtype=np.int64)
        mean, sd = self.params
        if self.kind == "normal":
            values = rng.normal(mean, sd, size=n)
        else:
            mu, sigma = _lognormal_params(mean, sd)
            values = rng.lognormal(mu, sigma, size=n)
        upper = float(self.high) if self.high is not None else 2.0 ** 62
        return np.clip(np.rint(values), self.low, upper).astype(np.int64)

    def draw(self, index: int) -> int:
        """Request ``index``'s length: a function of (seed, stream, index) only."""
        if isinstance(index, bool) or int(index) != index or index < 0:
            raise ValueError(f"request index must be an integer >= 0 (got {index!r})")
        return int(_block(self, int(index) // BLOCK)[int(index) % BLOCK])

    def draws(self, start: int, n: int) -> np.ndarray:
        """The lengths of requests start .. start + n - 1 (each equal to ``draw`` of its index)."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        first, last = start // BLOCK, (start + n - 1) // BLOCK
        joined = np.concatenate([_block(self, b) for b in range(first, last + 1)])
        return joined[start - first * BLOCK:start - first * BLOCK + n].copy()

    def mean(self) -> float:
        """The expected drawn length. Exact for fixed and uniform; for normal and lognormal, the mean of the
        continuous law clipped to [low, high], which leaves out the rounding to integers (a fraction of a
        token: tests/test_prompts.py measures it)."""
        if self.kind == "fixed":
            return float(self.params[0])
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        mean, sd = self.params
        high = math.inf if self.high is None else float(self.high)
        if sd == 0:
            return float(min(max(round(mean), self.low), high))
        if self.kind == "normal":
            law = stats.norm(mean, sd)
            alpha, beta = (self.low - mean) / sd, (high - mean) / sd

            def partial(a, b):  # integral of x f(x) over [low, high]
                return mean * (stats.norm.cdf(b) - stats.norm.cdf(a)) - sd * (stats.norm.pdf(b) - stats.norm.pdf(a))
            inside = partial(alpha, beta)
        else:
            mu, sigma = _lognormal_params(mean, sd)
            law = stats.lognorm(s=sigma, scale=math.exp(mu))
            cut = lambda x: (math.log(x) - mu - sigma ** 2) / sigma if x < math.inf else math.inf  # noqa: E731
            inside = math.exp(mu + sigma ** 2 / 2) * (stats.norm.cdf(cut(high)) - stats.norm.cdf(cut(self.low)))
        above = 0.0 if high == math.inf else high * float(law.sf(high))
        return float(self.low * law.cdf(self.low) + inside + above)

    def describe(self, unit: str = "tokens") -> str:
        """For people: ``normal(mean=512, sd=128 tokens), clipped to [16, 2048]``."""
        p = [f"{v:g}" for v in self.params]
        if self.kind == "fixed":  # one parameter: the others' texts would index past it
            law = f"fixed({p[0]} {unit})"
        else:
            law = {"uniform": f"uniform({p[0]}..{p[1]} {unit}, both included)",
                   "normal": f"normal(mean={p[0]}, sd={p[1]} {unit})",
                   "lognormal": f"lognormal(mean={p[0]}, sd={p[1]} {unit}; of the length, not of its log)"}[self.kind]
        if self.low > 1 or self.high is not None:
            law += f", clipped to [{self.low}, {self.high if self.high is not None else 'inf'}]"
        return law

    def __str__(self) -> str:
        """The notation, canonical: ``parse_length(str(d), flag)`` gives ``d`` back (for that flag's stream)."""
        text = f"{self.kind}:" + ",".join(f"{v:g}" for v in self.params)
        if self.low > 1:
            text += f",min={self.low}"
        if self.high is not None:
            text += f",max={self.high}"
        return text


@lru_cache(maxsize=256)
def _block(dist: LengthDistribution, block: int) -> np.ndarray:
    values = dist.sample(BLOCK, _rng(dist.seed, dist.stream, block))
    values.setflags(write=False)
    return values


def parse_length(text: str, flag: str, seed: int = 0) -> LengthDistribution:
    """``text`` in the notation above, for parameter ``flag`` (``input_tokens`` or ``--input-tokens``, which
    also names the random stream). A bad text raises a one-line ``ParameterError`` (a ``ValueError``)
    naming the flag, the text and the accepted forms."""
    name = _name(flag)

    def bad(reason: str) -> ParameterError:
        return ParameterError(f"{{{name}}} {text!r}: {reason}; accepted: {FORMS}", name)

    if not isinstance(text, str) or not text.strip():
        raise bad("empty")
    body = text.strip().lower().replace(" ", "")
    kind, sep, rest = body.partition(":")
    if not sep:
        kind, rest = "fixed", body
    if kind not in KINDS:
        raise bad(f"unknown law {kind!r} (one of {', '.join(KINDS)})")
    numbers: list[float] = []
    bounds: dict[str, float] = {}
    for piece in rest.split(","):
        key, eq, value = piece.rpartition("=")
        if not _NUMBER.fullmatch(value):
            raise bad(f"{piece!r} is not a number" if piece else "a number is missing")
        if eq:
            if key not in ("min", "max"):
                raise bad(f"unknown option {key!r} (min= and max= only)")
            if key in bounds:
                raise bad(f"{key}= given twice")
            bounds[key] = float(value)
        elif bounds:
            raise bad("min= and max= come after the law's numbers")
        else:
            numbers.append(float(value))
    wanted = 1 if kind == "fixed" else 2
    if len(numbers) != wanted:
        raise bad(f"{kind} takes {wanted} number{'s' if wanted > 1 else ''} (got {len(numbers)})")
    if not all(map(math.isfinite, numbers + list(bounds.values()))):
        raise bad("numbers must be finite")

    def integer(v: float, what: str) -> int:
        if v != int(v) or v < 1:
            raise bad(f"{what} must be an integer >= 1 (got {v:g})")
        return int(v)

    low, high = 1, None
    if kind == "fixed":
        params: tuple[float, ...] = (integer(numbers[0], "the length"),)
    elif kind == "uniform":
        params = (integer(numbers[0], "LOW"), integer(numbers[1], "HIGH"))
        if params[0] > params[1]:
            raise bad(f"LOW must be <= HIGH (got {params[0]} > {params[1]})")
    else:
        mean, sd = numbers
        if mean <= 0:
            raise bad(f"MEAN must be > 0 (got {mean:g})")
        if sd < 0:
            raise bad(f"SD must be >= 0 (got {sd:g})")
        params = (mean, sd)
        low = integer(bounds["min"], "min") if "min" in bounds else 1
        high = integer(bounds["max"], "max") if "max" in bounds else None
        if high is not None and low > high:
            raise bad(f"min must be <= max (got {low} > {high})")
    if bounds and kind in ("fixed", "uniform"):
        raise bad(f"min= and max= apply to normal and lognormal only ({kind} has its own bounds)")
    return LengthDistribution(kind, params, low, high, check_seed(seed), name)


def load_tokenizer(name: str, flag: str = "tokenizer"):
    """A tokenizer from a local folder, or from the Hugging Face hub by id (``org/name``) where it is reachable
    (or already cached). Any failure is one ``ParameterError`` line that names what was tried; no traceback.
    The hub is probed first with a 3 s connect; offline (or with ``HF_HUB_OFFLINE=1``) only the local cache
    is asked, so a miss fails at once instead of after retries."""
    key = _name(flag)
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ParameterError(f"{{{key}}} {name}: needs the transformers package "
                             "(pip install 'burstbench[service]', or transformers and tokenizers)", key) from None
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ParameterError(f"{{{key}}} {name}: is a file; pass the folder that holds tokenizer.json or "
                                 "tokenizer_config.json (what save_pretrained writes)", key)
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as err:  # transformers raises OSError, ValueError, KeyError ... for a bad folder
            raise ParameterError(f"{{{key}}} {name}: folder {path.resolve()} holds no tokenizer that "
                                 f"transformers can load ({_reason(err)})", key) from None
    from .texts import hub_reachable

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    online = not offline and hub_reachable()
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=not online)
    except Exception as err:  # no hub here is the common case: say so in one line
        where = "the hub did not provide it" if online else "the hub is not reachable and no cached copy exists"
        raise ParameterError(f"{{{key}}} {name}: no folder {path.resolve()} here, and {where} ({_reason(err)}); "
                             "pass a local folder that holds the tokenizer (one written by save_pretrained, "
                             "e.g. the served model's folder)", key) from None


def _reason(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:240]


def count_tokens(tokenizer, text: str) -> int:
    """Tokens in ``text`` without special tokens (no BOS/EOS, no chat template)."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


class SyntheticPrompts:
    """Prompt texts of drawn lengths cut from a corpus (the bundled texts, service/data/sentiment_texts.csv,
    unless given: any sequence of texts, e.g. a dataset's), one per request index.

    With a tokenizer: request k's prompt is a window of exactly n = ``lengths.draw(k)`` token ids of the
    tokenized corpus (texts joined by newlines, wrapping round at its end), decoded. Decoding and
    re-encoding can merge or split tokens where the window cuts a word, so the window is widened or
    narrowed by the difference until the text re-encodes to exactly n tokens (4 widths, then the same from
    the next start position, 4 starts in all; if none is exact, the nearest text is returned with its true
    count, so the caller records what was sent). With byte-level BPE tokenizers trained on the bundled
    texts (GPT-2- and RoBERTa-style) 3,000 windows of 1 to 3,000 tokens were all exact at the first try;
    tests/test_prompts.py asserts exactness and exercises the adjustment with a tokenizer that merges.
    The count is of the prompt text alone: a chat template adds its own tokens on the server, which its
    ``usage`` includes.

    Without a tokenizer: a window of n words of the corpus joined by single spaces, so the lengths are in
    words, not tokens (``unit`` is ``"words"``): a word is about 1.3 tokens for GPT-style BPE tokenizers.

    Windows start at offsets that differ for every request (a seeded permutation of the corpus positions,
    a fresh one for each pass through it), so no two prompts start at the same place and a prefix cache
    cannot make them free. The bundled texts are templated, so two windows can still open with the same
    few words: over 2,000 prompts the longest shared opening was 15 tokens, under one 16-token KV block.
    """

    def __init__(self, lengths: LengthDistribution | None, tokenizer=None, corpus: Sequence[str] | None = None,
                 seed: int = 0):
        self.lengths = lengths
        self.tokenizer = tokenizer
        self.seed = check_seed(seed)
        if corpus is None:  # the file burstbench.service.texts reads; the load side never imports the service
            from . import texts as datasets

            corpus = datasets._read_csv(datasets.BUNDLED, datasets.DEFAULT_COLUMN)[0]
        texts = [t for t in corpus if isinstance(t, str) and t.strip()]
        if tokenizer is not None:
            encoded = tokenizer([t + "\n" for t in texts], add_special_tokens=False, verbose=False)["input_ids"]
            self._units = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
        else:
            self._units = np.array(" ".join(texts).split(), dtype=object)
        if len(self._units) < 2:
            raise ValueError(f"the prompt corpus holds {len(self._units)} {self.unit}; at least 2 are needed")

    @property
    def unit(self) -> str:
        return "words" if self.tokenizer is None else "tokens"

    @property
    def corpus_size(self) -> int:
        """The corpus' length in ``unit``."""
        return len(self._units)

    def start(self, index: int) -> int:
        """Where request ``index``'s window starts in the corpus."""
        size = len(self._units)
        return int(_permutation(self.seed, size, index // size)[index % size])

    def _window(self, start: int, n: int) -> np.ndarray:
        return self._units[(start + np.arange(n)) % len(self._units)]

    def prompt(self, index: int, n: int | None = None) -> tuple[str, int]:
        """(text, its length in ``unit``) for request ``index``: ``n`` long (a trace's own count, say), or
        ``lengths.draw(index)`` when ``n`` is None. The length returned is that target but for the rare token
        window that no adjustment makes exact (then it is the text's true count)."""
        if n is None:
            if self.lengths is None:
                raise ValueError("these synthetic prompts have no length distribution: pass n")
            n = self.lengths.draw(index)
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"a prompt's length must be an integer >= 1 (got {n!r})")
        n, start = int(n), self.start(index)
        if self.tokenizer is None:
            return " ".join(self._window(start, n)), n
        best: tuple[int, str, int] | None = None
        for shift in range(MAX_SHIFTS):
            width = n
            for _ in range(MAX_ADJUSTMENTS):
                ids = self._window(start + shift, width).tolist()
                text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
                count = count_tokens(self.tokenizer, text)
                if best is None or abs(count - n) < best[0]:
                    best = (abs(count - n), text, count)
                if count == n:
                    return text, n
                width = max(1, width + n - count)
        return best[1], best[2]

    def describe(self) -> str:
        name = str(getattr(self.tokenizer, "name_or_path", "") or "given as an object")
        source = (f"tokenizer {name}" if self.tokenizer is not None
                  else f"no tokenizer: lengths in words ({WORDS_PER_TOKEN_NOTE})")
        lengths = self.lengths.describe(self.unit) if self.lengths is not None else f"given lengths in {self.unit}"
        return (f"synthetic prompts of {lengths}; {source}; "
                f"corpus {self.corpus_size} {self.unit}")


@lru_cache(maxsize=8)
def _permutation(seed: int, size: int, cycle: int) -> np.ndarray:
    order = _rng(seed, "prompt_start", cycle).permutation(size)
    order.setflags(write=False)
    return order

