"""What the CLI prints: terminal-safe text, faithful JSON, one-line errors.

Document text, ids and error messages echo data from sources; printed raw, an escape
sequence in a document could recolour, retitle or rewrite the operator's terminal.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from .core.serving import TableReadError, format_json, one_line
from .core.status import source_problem

# ESC and C1 sequences (CSI, OSC, DCS/PM/APC/SOS, two-byte ESC) are dropped whole, so no
# "[31m" stays behind; any other C0/C1 control or DEL is dropped, tabs and newlines become spaces.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS..
    r"|\x1b[ -/]*[0-~]?"  # other ESC, lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # C1 CSI
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_JSON_UNESCAPED = re.compile(r"[\x7f-\x9f]")  # json.dumps(ensure_ascii=False) leaves these raw


def clean(value: Any) -> str:
    """`value` as text a terminal only displays: no escape sequences, no control characters."""
    text = _SEQUENCES.sub("", str(value))
    return _CONTROLS.sub(lambda m: " " if m.group() in "\t\n\r" else "", text)


def print_json(value: Any) -> None:
    """Faithful JSON: every control character is a \\u escape, none reaches the terminal raw."""
    print(_JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", format_json(value)))


def error(message: Any) -> None:
    """One line on stderr, whatever the message echoes."""
    print(f"error: {clean(message)}", file=sys.stderr)


def _model_named_by(table: str, source: str, config) -> str | None:
    """The registered model whose vectors table of `source` is `table`, if any."""
    from .core.models import model_version
    from .core.store import vectors_table_name

    for model in config.models:
        if vectors_table_name(source, model_version(model).version_id) == table:
            return model.name
    return None


def table_error(exc: TableReadError, config) -> str:
    """The damaged table, why, and how to rebuild it: one line. A rebuilt table is served again
    by the refresh itself: the pointer follows a table whose pinned version is gone."""
    uri = config.storage_uri
    where = f"{exc.table} in {uri}" if "://" in uri else str(Path(uri) / f"{exc.table}.lance")
    scope = f" --source {exc.source}" if exc.source else ""
    return (
        f"{exc}; to rebuild it, move {where} aside and run `embeddings-platform materialize{scope}`"
    )


def storage_error(exc: BaseException, storage_uri: str) -> str:
    return (
        f"the LanceDB storage at {storage_uri} cannot be read: {one_line(exc)}; "
        "check the storage or rebuild it with `embeddings-platform materialize`"
    )


def failure_reason(result) -> str:
    """The innermost error of a failed in-process Dagster run, on one line."""
    events = result.get_step_failure_events()
    if not events:
        return "the run failed (see the Dagster run log)"
    info = events[0].step_failure_data.error
    while info is not None and info.cause is not None:
        info = info.cause
    if info is None:
        return f"step {events[0].step_key} failed"
    message = re.sub(rf"^[\w.]*\b{re.escape(info.cls_name or '')}: ", "", info.message.strip())
    return one_line(message)


def print_hits(hits) -> None:
    for rank, hit in enumerate(hits, start=1):
        snippet = textwrap.shorten(" ".join(clean(hit.text).split()), 160)
        print(f"{rank:>2}. {hit.score:.3f}  {clean(hit.doc_id)}  [{clean(hit.chunk_id)}]")
        print(f"    {snippet}")
        lin = {k: clean(v) for k, v in hit.lineage.items()}
        print(
            f"    model={lin['model_version']} snapshot={lin['source_snapshot']} "
            f"doc_sha256={lin['doc_sha256'][:12]} strategy={lin['chunking_strategy']} "
            f"run={lin['run_id']} profile={lin['retrieval_profile']}"
        )


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)  # None: the table cannot be read


def print_status(rows: list[dict[str, Any]], config) -> None:
    """The status table, then one line per source that cannot be read (it may have no rows)."""
    print(
        f"{'source':<16}{'model version':<24}{'docs':>7}{'quar.':>6}{'chunks':>8}{'vectors':>9}"
        f"{'tbl v':>7}  {'serving':<36}health"
    )
    for r in rows:
        if r["serving"]:
            serving = f"yes (v{r['served_table_version']} since {r['serving_since'][:19]})"
        else:
            serving = "no (shadow)" if r["table_version"] is not None else "no"
        if not r["registered"]:  # an edited or removed entry's version, kept while it serves
            serving += " [unregistered]"
        print(
            f"{clean(r['source']):<16}{clean(r['model_version']):<24}{r['documents']:>7}"
            f"{r['quarantined']:>6}{_count(r['chunks']):>8}{_count(r['vectors']):>9}"
            f"{str(r['table_version'] or '-'):>7}  {serving:<36}{clean(r['health'] or '-')}"
        )
    if not config.sources:
        print(f"(no sources registered in {clean(config.config_path)}; add one under sources:)")
    for source in config.sources:
        problem = source_problem(source)
        if problem:
            print(f"source {clean(source.name)} cannot be read: {clean(problem)}")
