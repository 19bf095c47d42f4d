"""Synthetic prompts and output lengths: the length notation, per-index draws, exact token counts and the
token columns of a trace."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from burstbench.arrivals.schedule import STREAMS as ARRIVAL_STREAMS
from burstbench.arrivals.traces import Trace
from burstbench.locustfiles import prompts
from burstbench.locustfiles.prompts import (LengthDistribution, SyntheticPrompts, count_tokens, load_tokenizer,
                                            parse_length)

N = 20_000


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    """A byte-level BPE trained on the bundled texts, saved as a folder, as service/llm_builder.py builds one."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from burstbench.service.texts import load_bundled

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for t, _ in load_bundled()], vocab_size=2000, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                        model_max_length=2048)
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


# ---- the notation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, params, low, high", [
    ("128", "fixed", (128,), 1, None),
    ("fixed:128", "fixed", (128,), 1, None),
    (" Uniform: 64, 256 ", "uniform", (64, 256), 1, None),
    ("normal:512,128", "normal", (512, 128), 1, None),
    ("lognormal:512,256,max=4096", "lognormal", (512, 256), 1, 4096),
    ("normal:512,128,min=16,max=2048", "normal", (512, 128), 16, 2048),
    ("normal:5.5,0", "normal", (5.5, 0), 1, None),
])
def test_the_notation_parses_and_prints_back(text, kind, params, low, high):
    dist = parse_length(text, "--input-tokens", seed=3)
    assert (dist.kind, dist.params, dist.low, dist.high, dist.seed, dist.stream) == (kind, params, low, high, 3,
                                                                                      "input_tokens")
    assert parse_length(str(dist), "input_tokens", seed=3) == dist


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("zipf:1.2", "unknown law 'zipf' (one of fixed, uniform, normal, lognormal)"),
    ("0", "the length must be an integer >= 1 (got 0)"),
    ("fixed:12.5", "the length must be an integer >= 1 (got 12.5)"),
    ("fixed:1,2", "fixed takes 1 number (got 2)"),
    ("uniform:64", "uniform takes 2 numbers (got 1)"),
    ("uniform:256,64", "LOW must be <= HIGH (got 256 > 64)"),
    ("uniform:0,64", "LOW must be an integer >= 1 (got 0)"),
    ("uniform:1,8,max=4", "min= and max= apply to normal and lognormal only (uniform has its own bounds)"),
    ("normal:abc,1", "'abc' is not a number"),
    ("normal:512,", "a number is missing"),
    ("normal:0,10", "MEAN must be > 0 (got 0)"),
    ("lognormal:512,-1", "SD must be >= 0 (got -1)"),
    ("normal:512,1e999", "numbers must be finite"),
    ("normal:512,128,max=10,min=20", "min must be <= max (got 20 > 10)"),
    ("normal:512,128,min=0.5", "min must be an integer >= 1 (got 0.5)"),
    ("normal:512,128,top=3", "unknown option 'top' (min= and max= only)"),
    ("normal:512,min=3,128", "min= and max= come after the law's numbers"),
    ("normal:512,128,max=9,max=10", "max= given twice"),
])
def test_bad_notation_is_one_line_naming_the_flag_the_text_and_the_forms(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_length(text, "output_tokens")
    message = str(caught.value)
    assert message == f"--output-tokens {text!r}: {reason}; accepted: {prompts.FORMS}"
    assert "\n" not in message


def test_errors_render_as_config_keys_too():
    with pytest.raises(prompts.ParameterError) as caught:
        parse_length("normal:1", "input_tokens")
    assert caught.value.in_file("plan.toml").startswith("plan.toml: load.input_tokens 'normal:1': normal takes 2")


# ---- draws -----------------------------------------------------------------------------------------------------

def test_draws_depend_on_seed_stream_and_index_only():
    dist = parse_length("normal:300,80", "input_tokens", seed=7)
    straight = [dist.draw(k) for k in range(3000)]
    backwards = [dist.draw(k) for k in reversed(range(3000))][::-1]
    assert straight == backwards == dist.draws(0, 3000).tolist()  # any order, any worker: the same number per index
    assert dist.draws(1500, 1000).tolist() == straight[1500:2500]  # a share across block boundaries
    assert parse_length("normal:300,80", "--input-tokens", seed=7).draws(0, 3000).tolist() == straight  # a rerun
    assert dist.with_seed(8).draws(0, 3000).tolist() != straight
    other_stream = parse_length("normal:300,80", "output_tokens", seed=7)
    assert not np.array_equal(other_stream.draws(0, 3000), straight)
    assert all(isinstance(v, int) for v in straight[:5])
    with pytest.raises(ValueError, match=r"request index must be an integer >= 0 \(got -1\)"):
        dist.draw(-1)


def test_the_streams_are_apart_from_the_arrival_streams():
    assert not set(prompts.STREAMS.values()) & set(ARRIVAL_STREAMS.values())
    assert prompts._stream_key("max_tokens") not in set(prompts.STREAMS.values()) | set(ARRIVAL_STREAMS.values())


def test_fixed_and_uniform_bounds_are_inclusive():
    assert set(parse_length("fixed:128", "input_tokens").draws(0, 500).tolist()) == {128}
    small = parse_length("uniform:1,3", "input_tokens").draws(0, 3000)
    counts = np.bincount(small, minlength=4)
    assert counts[0] == 0 and all(abs(c / 3000 - 1 / 3) < 0.03 for c in counts[1:])
    wide = parse_length("uniform:64,256", "input_tokens", seed=1).draws(0, N)
    assert wide.min() == 64 and wide.max() == 256
    assert wide.mean() == pytest.approx(160, abs=4 * math.sqrt((193 ** 2 - 1) / 12 / N))
    assert parse_length("uniform:64,256", "input_tokens").mean() == 160


@pytest.mark.parametrize("text", ["normal:512,128", "lognormal:512,256", "lognormal:200,400"])
def test_normal_and_lognormal_have_the_stated_mean_and_sd_of_the_length(text):
    dist = parse_length(text, "input_tokens", seed=11)
    x = dist.draws(0, N)
    mean, sd = dist.params
    assert x.min() >= 1 and x.dtype == np.int64
    assert x.mean() == pytest.approx(mean, abs=4 * sd / math.sqrt(N))
    assert x.std(ddof=1) == pytest.approx(sd, rel=0.05 if dist.kind == "normal" else 0.15)
    if dist.kind == "normal":
        law = stats.norm(mean, sd)
    else:
        mu, sigma = prompts._lognormal_params(mean, sd)
        law = stats.lognorm(s=sigma, scale=math.exp(mu))
        assert np.log(x).mean() == pytest.approx(mu, abs=4 * sigma / math.sqrt(N))  # the log's own parameters
    assert stats.kstest(x, law.cdf).pvalue > 1e-3  # rounding to integers moves the CDF by under 0.002


def test_clipping_piles_the_clipped_mass_onto_the_bounds():
    dist = parse_length("normal:100,200,min=16,max=300", "input_tokens", seed=5)
    x = dist.draws(0, N)
    assert x.min() == 16 and x.max() == 300
    law = stats.norm(100, 200)
    assert np.mean(x == 16) == pytest.approx(law.cdf(16.5), abs=0.015)  # not redrawn: rounded, then clamped
    assert np.mean(x == 300) == pytest.approx(law.sf(299.5), abs=0.015)
    assert dist.mean() == pytest.approx(x.mean(), abs=4 * x.std() / math.sqrt(N))


@pytest.mark.parametrize("text", ["normal:3,5", "lognormal:4,10,max=60", "lognormal:512,256,min=300,max=700"])
def test_mean_is_the_expected_draw_within_the_rounding(text):
    dist = parse_length(text, "output_tokens", seed=2)
    x = dist.draws(0, 200_000)
    assert dist.mean() == pytest.approx(x.mean(), abs=0.5 + 4 * x.std() / math.sqrt(len(x)))


def test_describe_says_what_the_numbers_are():
    assert (parse_length("lognormal:512,256,max=4096", "input_tokens").describe()
            == "lognormal(mean=512, sd=256 tokens; of the length, not of its log), clipped to [1, 4096]")
    assert parse_length("uniform:1,8", "input_tokens").describe("words") == "uniform(1..8 words, both included)"


# ---- tokenizers and prompts ------------------------------------------------------------------------------------

def test_a_local_tokenizer_folder_loads_and_counts_without_special_tokens(bpe_folder):
    tokenizer = load_tokenizer(str(bpe_folder))
    ids = tokenizer("the service was great", add_special_tokens=False)["input_ids"]
    assert count_tokens(tokenizer, "the service was great") == len(ids) > 0
    assert count_tokens(tokenizer, "") == 0


def test_a_tokenizer_that_cannot_be_had_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as caught:
        load_tokenizer("no-such-org/no-such-tokenizer")
    message = str(caught.value)
    assert message.startswith("--tokenizer no-such-org/no-such-tokenizer: no folder ")
    assert "the hub is not reachable and no cached copy exists" in message and "pass a local folder" in message
    assert "\n" not in message and "Traceback" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^--tokenizer .*empty: folder .* holds no tokenizer that transformers"):
        load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^--tokenizer .*file.json: is a file; pass the folder"):
        load_tokenizer(str(tmp_path / "file.json"))


def test_synthetic_prompts_have_exactly_the_drawn_number_of_tokens(bpe_folder):
    tokenizer = load_tokenizer(str(bpe_folder))
    lengths = parse_length("lognormal:400,300,max=3000", "input_tokens", seed=4)
    synthetic = SyntheticPrompts(lengths, tokenizer, seed=4)
    assert synthetic.unit == "tokens" and synthetic.corpus_size > 30_000
    heads = []
    for k in range(300):
        text, n = synthetic.prompt(k)
        assert n == lengths.draw(k) == count_tokens(tokenizer, text)
        heads.append(tuple(tokenizer(text, add_special_tokens=False)["input_ids"][:16]))
    # No two prompts share a whole 16-token KV-cache block (vLLM's default block size) at their start.
    assert len(set(heads)) == 300
    assert SyntheticPrompts(lengths, tokenizer, seed=4).prompt(17) == synthetic.prompt(17)  # reproducible
    assert SyntheticPrompts(lengths, tokenizer, seed=5).prompt(17) != synthetic.prompt(17)
    long_text, long_n = SyntheticPrompts(parse_length("fixed:40000", "input_tokens"), tokenizer).prompt(0)
    assert long_n == 40_000 == count_tokens(tokenizer, long_text)  # longer than the corpus: it wraps round


def test_a_given_length_replaces_the_draw(bpe_folder):
    """What a trace's token column needs: request k's prompt, of that row's count."""
    tokenizer = load_tokenizer(str(bpe_folder))
    from_trace = SyntheticPrompts(None, tokenizer, seed=1)
    text, n = from_trace.prompt(3, 123)
    assert n == 123 == count_tokens(tokenizer, text)
    assert from_trace.prompt(3, 123) == (text, n) and from_trace.prompt(4, 123) != (text, n)
    assert "given lengths in tokens" in from_trace.describe()
    with pytest.raises(ValueError, match=r"no length distribution: pass n"):
        from_trace.prompt(3)
    with pytest.raises(ValueError, match=r"a prompt's length must be an integer >= 1 \(got 0\)"):
        from_trace.prompt(3, 0)


def test_window_starts_are_distinct_for_a_whole_pass_through_the_corpus():
    synthetic = SyntheticPrompts(parse_length("fixed:3", "input_tokens"), corpus=["a b c d e f g"], seed=1)
    first_pass = [synthetic.start(k) for k in range(7)]
    assert sorted(first_pass) == list(range(7))
    assert sorted(synthetic.start(k) for k in range(7, 14)) == list(range(7))


class MergingTokenizer:
    """Characters are tokens, but "ab" is one token unless it ends the text: a window that ends on that token
    decodes to a text that re-encodes to one token more, so the window has to be adjusted."""

    name_or_path = "merging"

    def __init__(self):
        self.calls = 0

    def __call__(self, texts, add_special_tokens=False, verbose=False):
        self.calls += 1

        def encode(text):
            ids, i = [], 0
            while i < len(text):
                merged = text.startswith("ab", i) and i + 2 < len(text)
                ids.append(0 if merged else ord(text[i]))
                i += 2 if merged else 1
            return ids
        return {"input_ids": [encode(t) for t in texts] if isinstance(texts, list) else encode(texts)}

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False):
        return "".join("ab" if i == 0 else chr(i) for i in ids)


def test_a_window_that_re_encodes_differently_is_adjusted_to_the_exact_count():
    tokenizer = MergingTokenizer()
    synthetic = SyntheticPrompts(parse_length("fixed:3", "input_tokens"), tokenizer, corpus=["xabx", "yaby"])
    assert synthetic.corpus_size == 8  # x, ab, x, newline, y, ab, y, newline
    adjusted = 0
    for k in range(synthetic.corpus_size):
        before = tokenizer.calls
        text, n = synthetic.prompt(k)
        adjusted += tokenizer.calls - before > 1  # one encoding per try
        assert n == 3 == count_tokens(tokenizer, text)
    assert adjusted >= 2  # the windows ending on "ab" needed more than one try


def test_without_a_tokenizer_the_lengths_are_exact_word_counts():
    lengths = parse_length("uniform:1,500", "input_tokens", seed=9)
    synthetic = SyntheticPrompts(lengths, seed=9)
    assert synthetic.unit == "words" and "1.3 tokens" in synthetic.describe()
    for k in range(300):
        text, n = synthetic.prompt(k)
        assert n == lengths.draw(k) == len(text.split()) and text == " ".join(text.split())


def test_output_lengths_are_drawn_per_request_index_like_input_lengths():
    max_tokens = parse_length("uniform:16,256", "--output-tokens", seed=3)
    assert max_tokens.stream == "output_tokens"
    assert [max_tokens.draw(k) for k in (5, 900, 5)] == [max_tokens.draw(5), max_tokens.draw(900), max_tokens.draw(5)]
    assert isinstance(max_tokens, LengthDistribution)


# ---- token columns of a trace ------------------------------------------------------------------------------------

def _burstgpt(path, rows):
    pd.DataFrame(rows, columns=["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
                                "Log Type"]).to_csv(path, index=False)
    return path


def test_trace_token_columns_follow_the_replay_order(tmp_path):
    path = _burstgpt(tmp_path / "burst.csv", [
        (5.0, "ChatGPT", 50, 500, 550, "Conversation log"),
        (1.0, "ChatGPT", 10, 100, 110, "Conversation log"),
        (3.0, "GPT-4", 30, 300, 330, "API log"),
        (3.0, "GPT-4", 31, 0, 31, "API log"),   # a tie keeps its file order; 0 response tokens (a failure) is kept
        (None, "GPT-4", 99, 999, 1098, "API log"),  # no timestamp: skipped for the tokens too
        (4.0, "ChatGPT", 40, 400, 440, "Conversation log"),
    ])
    trace = Trace.load(path, "Timestamp", mean=0.5, input_tokens_column="request tokens",
                       output_tokens_column="Response tokens")
    np.testing.assert_array_equal(trace.offsets_s, np.array([0, 2, 2, 3, 4]) * 0.5)
    assert trace.input_tokens.tolist() == [10, 30, 31, 40, 50]
    assert trace.output_tokens.tolist() == [100, 300, 0, 400, 500]
    assert trace.tokens_for(2) == (31, 0)
    assert trace.token_columns == ("Request tokens", "Response tokens")
    assert trace.describe()["trace"]["token_columns"] == {"input": "Request tokens", "output": "Response tokens"}
    only_input = Trace.load(path, "Timestamp", input_tokens_column="Request tokens")
    assert only_input.output_tokens is None and only_input.tokens_for(0) == (10, None)
    plain = Trace.load(path, "Timestamp")
    assert plain.input_tokens is None and "token_columns" not in plain.describe()["trace"]


@pytest.mark.parametrize("column, value, message", [
    ("Request tokns", None, "--trace-input-tokens 'Request tokns' is not a column of"),
    ("Request tokens", -3, "column 'Request tokens', row 2: '-3' is negative"),
    ("Request tokens", 2.5, "column 'Request tokens', row 2: '2.5' is not a whole number"),
    ("Request tokens", "many", "column 'Request tokens', row 2: 'many' is not a whole number"),
    ("Request tokens", None, "column 'Request tokens', row 2: 'nan' is empty"),
])
def test_bad_token_columns_name_the_column_and_the_row(tmp_path, column, value, message):
    rows = [(1.0, "m", 10, 1, 11, "x"), (0.5, "m", value, 2, 2, "x"), (2.0, "m", 7, 3, 10, "x"),
            (0.1, "m", -1, 3, 2, "x")]  # row 4 is bad too and replays first: the first bad row in the file is named
    path = _burstgpt(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError) as caught:
        Trace.load(path, "Timestamp", input_tokens_column=column)
    assert message in str(caught.value) and "\n" not in str(caught.value)
