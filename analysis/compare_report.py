"""`burstbench compare`: the comparison written out as Markdown, HTML, CSV and PNG."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .compare import (RESPONSE_STATS, baseline_deltas, compare_figure, comparison_table, describe_differences,
                      format_comparison, paper_layout)
from .compare_resources import format_resources, resources_table
from .compare_streaming import (all_streaming, format_goodput, format_streaming, goodput_deltas, streaming_deltas,
                                streaming_table)
from .runs import RunError, load_run
from .slo import describe_slos, run_slos


def write_comparison(run_paths, out: Path, baseline=None, slos: dict[str, float] | None = None) -> tuple[str, list[Path]]:
    """Load the runs, compare them against the baseline (default: the first) and write the files.

    When every run streamed: TTFT, TPOT and ITL too. When any run has telemetry: peak and mean resource use. Goodput when there are SLOs: ``slos`` (the --slo
    flags), else the baseline's run.json ``slo``; every run is judged by that one set.
    """
    runs = [load_run(p) for p in run_paths]
    if len(runs) < 2 and baseline is None:
        raise RunError("compare needs at least two results folders")
    if baseline is not None:
        base = load_run(baseline)
        runs = runs if any(r.path.resolve() == base.path.resolve() for r in runs) else [base, *runs]
        base_index = next(i for i, r in enumerate(runs) if r.path.resolve() == base.path.resolve())
    else:
        base_index = 0
    out.mkdir(parents=True, exist_ok=True)
    facts = describe_differences(runs)
    table = comparison_table(runs)
    deltas = baseline_deltas(runs, base_index)
    tables = {"runs": facts, "comparison": table, "baseline_deltas": deltas.set_index(["run", "quantile"])}
    scenarios = {r.record.scenario for r in runs}
    if len(scenarios) > 1:
        try:  # the paper's Tables 3 and 4: setups as rows, scenario x statistic as columns
            tables["table3_percentiles"] = paper_layout(runs)
            tables["table4_response_time"] = paper_layout(runs, RESPONSE_STATS)
        except ValueError as err:
            tables["paper_layout_note"] = facts.assign(note=str(err))[["note"]]
    extra_text = []
    if all_streaming(runs):
        stream_table, stream_deltas = streaming_table(runs), streaming_deltas(runs, base_index)
        tables["streaming"] = stream_table
        tables["streaming_deltas"] = stream_deltas.set_index(["measure", "run", "quantile"])
        extra_text.append(format_streaming(stream_table, stream_deltas))
    judged_by = run_slos(runs[base_index].record, slos)
    if judged_by:
        good = goodput_deltas(runs, base_index, judged_by)
        tables["goodput_deltas"] = good.set_index("run")
        extra_text.append(format_goodput(good, describe_slos(judged_by)))
    resources = resources_table(runs)  # only when some run has telemetry
    if resources is not None:
        tables["resources"] = resources
        extra_text.append(format_resources(resources))
    figure = compare_figure(runs, out / "compare_ecdf.png")
    written = []
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv")
        written.append(out / f"{name}.csv")
    text = "\n\n".join([format_comparison(table, deltas), *extra_text])
    md_lines = ["# Comparison", "", "```", text, "```", ""]
    for name, frame in tables.items():
        md_lines += [f"## {name}", "", frame.to_markdown(floatfmt=".4g"), ""]
    md_lines += [f"![latency ECDF]({figure.name})", ""]
    (out / "compare.md").write_text("\n".join(md_lines))
    data = base64.b64encode(figure.read_bytes()).decode()
    body = "".join(f"<h2>{html.escape(n)}</h2>{f.to_html(border=0, na_rep='n/a', float_format=lambda v: f'{v:.4g}')}"
                   for n, f in tables.items())
    (out / "compare.html").write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Comparison</title>'
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd}img{max-width:100%}</style></head><body>"
        f"<h1>Comparison</h1><pre>{html.escape(text)}</pre>{body}"
        f'<figure><img alt="latency ECDF" src="data:image/png;base64,{data}"></figure></body></html>\n')
    written += [out / "compare.md", out / "compare.html", figure]
    return text, written
