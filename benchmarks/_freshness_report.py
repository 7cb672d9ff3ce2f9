"""The RESULTS.md section of bench_freshness.py: latency percentiles and where the time went."""

from __future__ import annotations

import numpy as np
from _dagster_dev import CATEGORIES


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {
        "n": len(a),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def summary(variant: dict) -> dict:
    done = [c for c in variant["changes"] if c["seconds"] is not None]
    return {
        "all": _stats([c["seconds"] for c in done]),
        "edit": _stats([c["seconds"] for c in done if c["kind"] == "edit"]),
        "delete": _stats([c["seconds"] for c in done if c["kind"] == "delete"]),
        "lost": len(variant["changes"]) - len(done),
    }


def _f(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _mean_breakdown(variant: dict) -> dict[str, float]:
    parts = [c["breakdown"]["seconds"] for c in variant["changes"] if c.get("breakdown")]
    return {k: (sum(p[k] for p in parts) / len(parts) if parts else 0.0) for k in CATEGORIES}


def _runs_line(variant: dict) -> str:
    first = next(
        (c for c in variant["changes"] if c.get("breakdown") and c["kind"] == "edit"), None
    )
    if first is None:
        return "-"
    return "; ".join(
        f"`{r['job']}` ({r['trigger'] or 'sensor'}): {', '.join(s for s in r['steps'])}"
        for r in first["breakdown"]["runs"]
    )


def render(r: dict) -> str:
    variants = r["variants"]
    names = [v["name"] for v in variants]
    rows = []
    for v in variants:
        s = summary(v)
        rows.append(
            f"| {v['name']} | {s['all']['n']} | **{_f(s['all']['p50'])}** | "
            f"**{_f(s['all']['p95'])}** | "
            f"{_f(s['all']['mean'])} | {_f(s['all']['max'])} | {_f(s['edit']['p50'])} | "
            f"{_f(s['delete']['p50'])} | {s['lost']} | {v['load']['mean'] if v['load'] else '-'} "
            f"(max {v['load']['max'] if v['load'] else '-'}) |"
        )
    means = [_mean_breakdown(v) for v in variants]
    parts = [
        f"| {c} | " + " | ".join(f"{m[c]:.1f}" for m in means) + " |"
        for c in CATEGORIES
        if any(m[c] >= 0.05 for m in means)
    ]
    runs = [f"- {v['name']}: " + _runs_line(v) + _all_runs(v) for v in variants]
    idle = [
        f"- {v['name']}: `source_change_sensor` {_idle(v, 'source_change_sensor')}; "
        f"`embeddings_automation` {_idle(v, 'embeddings_automation')}"
        for v in variants
    ]
    changes = [
        f"| {i + 1} | {c['kind']} | {c['id']} | {c['pause']} | "
        + " | ".join(_f(v["changes"][i]["seconds"]) for v in variants)
        + " |"
        for i, c in enumerate(variants[0]["changes"])
    ]
    build = f"{r['build_seconds']:.0f}"
    chosen = ", ".join(f"`{k}: {v}`" for k, v in (r.get("refresh") or {}).items())
    intervals = f"with refresh {chosen}" if chosen else "at its default intervals"
    return f"""Command: `{r["command"].strip()}`; "this change" is commit {r["commit"]}.
Machine: {r["machine"]}; CPU {r["cpu"]}, {r.get("nproc", 2)} cores shared with other jobs (load
average during each variant in the table).
Data: SciFact's first {r["docs"]:,} abstracts as a `folder` source (one file per abstract), model
`{r["model"]}`; initial build (untimed, `embeddings-platform materialize`) {build} s.
Each variant runs `dagster dev` (webserver + daemon, its deploy/dagster.local.yaml) {intervals}
on a copy of that build; the same edits and deletes are saved at the same
random moments (0-30 s after the daemon went quiet). Served = the first `core.serving.search` on
the pinned serving pointer (polled every 0.5 s) that returns the new text, or no longer returns
a deleted document. {_headline(variants)}

**Save to served, seconds**

| code | changes | p50 | p95 | mean | max | edits p50 | deletes p50 | lost | load avg (1 min) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{chr(10).join(rows)}

**Where the time went** (mean seconds per change, from the instance's ticks, run records and step
events; each instant counted once, for the activity on the path to serving)

| activity | {" | ".join(names)} |
| --- | {" | ".join("---:" for _ in names)} |
{chr(10).join(parts)}

Runs on the path from save to served (first edit; check runs after it are not listed):
{chr(10).join(runs)}

Idle cost of the daemon (ticks that requested nothing, mean seconds and how often they come):
{chr(10).join(idle)}

<details><summary>Every change</summary>

| # | kind | abstract | pause s | {" | ".join(names)} |
| ---: | --- | --- | ---: | {" | ".join("---:" for _ in names)} |
{chr(10).join(changes)}

</details>
"""


def _all_runs(variant: dict) -> str:
    counts = [len(c["runs"]) for c in variant["changes"] if "runs" in c]
    if not counts:
        return ""
    return f" ({sum(counts) / len(counts):.1f} runs per change in all, until the daemon was quiet)"


def _headline(variants: list[dict]) -> str:
    if len(variants) < 2:
        return ""
    (a, b) = (summary(variants[0])["all"], summary(variants[-1])["all"])
    return (
        f"**p50 {_f(a['p50'])} s -> {_f(b['p50'])} s, p95 {_f(a['p95'])} s -> {_f(b['p95'])} s.**"
    )


def _idle(variant: dict, name: str) -> str:
    tick = (variant.get("idle_ticks") or {}).get(name) or {}
    if tick.get("seconds") is None:
        return "-"
    return f"{tick['seconds']:.2f} s every {tick['every']:.0f} s"
