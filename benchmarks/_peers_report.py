"""bench_peers.py's section of RESULTS.md: the tables, and why a peer wins where it does."""

from __future__ import annotations

from statistics import median


def _census(m: dict) -> str:
    return (
        f"{m['stale_vectors']} | {m['missing_chunks']} | {m['duplicate_vectors']} | "
        f"{m['vectors']:,}"
    )


def _build_table(r: dict) -> str:
    ours = r["build"]["ours"]["seconds"]
    lines = [
        "| initial build | wall s | / ours | texts embedded | stale vectors | chunks without "
        "a vector | duplicate vectors | vectors stored | load avg (1 min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, m in r["build"].items():
        lines.append(
            f"| {r['names'][key]} | {m['seconds']:.1f} | {m['seconds'] / ours:.2f} | "
            f"{m['texts_embedded']:,} | {_census(m)} | {m['load_avg_1min']:.2f} |"
        )
    return "\n".join(lines)


def refresh_summary(r: dict) -> dict:
    """Per side over the rounds: median wall time and its ratio to ours in the same round,
    texts embedded per round, and what its store holds after the last round."""
    rounds = r["rounds"]
    out = {}
    for key in r["names"]:
        seconds = [c["sides"][key]["seconds"] for c in rounds]
        ratios = [c["sides"][key]["seconds"] / c["sides"]["ours"]["seconds"] for c in rounds]
        out[key] = {
            "median_seconds": median(seconds),
            "min_seconds": min(seconds),
            "max_seconds": max(seconds),
            "median_ratio": median(ratios),
            "texts_per_round": median(c["sides"][key]["texts_embedded"] for c in rounds),
            "load": median(c["sides"][key]["load_avg_1min"] for c in rounds),
            "last": rounds[-1]["sides"][key],
        }
    return out


def _refresh_table(r: dict) -> str:
    n = len(r["rounds"])
    lines = [
        f"| refresh, {n} rounds | wall s, median (min-max) | / ours (median of rounds) | texts "
        f"embedded per round | stale vectors left after round {n} | chunks without a vector | "
        "duplicate vectors | vectors stored | load avg (1 min, median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, s in refresh_summary(r).items():
        lines.append(
            f"| {r['names'][key]} | {s['median_seconds']:.2f} ({s['min_seconds']:.2f}-"
            f"{s['max_seconds']:.2f}) | {s['median_ratio']:.2f} | {s['texts_per_round']:g} | "
            f"{_census(s['last'])} | {s['load']:.2f} |"
        )
    return "\n".join(lines)


def render(r: dict) -> str:
    first, last = r["rounds"][0], r["rounds"][-1]
    return f"""Command: `{r["command"]}` (interpreter `{r["python"]}`, the peers venv: \
`make peers-venv`).
Machine: {r["machine"]}; 2 cores shared with other jobs (load average beside each figure).
Data: BEIR SciFact, {r["documents"]:,} documents, {r["chunks"]:,} chunks (our token-window \
chunker, 256/32). Each round
appends a sentence to {first["changed_documents"]} documents (1%) and deletes \
{first["deleted_documents"]}, then every side refreshes (sides
in a rotated order each round); after {len(r["rounds"])} rounds: {last["documents"]:,} \
documents, {last["chunks"]:,} chunks. Embedder
`{r["embedder"]}` (model2vec distilled from MiniLM) on every side through one counting
wrapper: the texts column counts the same calls everywhere. Stale vector = a stored vector
whose text is no chunk of the current source, counted by reading each side's store back.
Ratios are against ours measured in the same run (same round for refreshes).

{_build_table(r)}

{_refresh_table(r)}

{_notes(r)}
"""


def _wall(r: dict, summary: dict) -> str:
    ours = summary["ours"]["median_seconds"]
    ahead = [
        f"{r['names'][k]} {v['median_seconds']:.2f} s"
        for k, v in summary.items()
        if k != "ours" and v["median_seconds"] < ours
    ]
    lead = (
        f"ours has the lowest median ({ours:.2f} s);"
        if not ahead
        else f"a lower median than ours ({ours:.2f} s): " + ", ".join(ahead) + ";"
    )
    return f"{lead} {_noise(r, summary)}"


def _build_note(r: dict) -> str:
    ours = r["build"]["ours"]["seconds"]
    ratios = {k: m["seconds"] / ours for k, m in r["build"].items() if k != "ours"}
    faster = [f"{r['names'][k]} ({v:.2f})" for k, v in ratios.items() if v < 1]
    return (
        "faster than ours: " + ", ".join(faster) + "."
        if faster
        else f"no peer builds faster than ours (ratios {min(ratios.values()):.2f}-"
        f"{max(ratios.values()):.2f})."
    )


def _noise(r: dict, summary: dict) -> str:
    ours = summary["ours"]
    faster = [
        f"{r['names'][k]} {s['min_seconds']:.2f} s"
        for k, s in summary.items()
        if k != "ours" and s["min_seconds"] < ours["max_seconds"]
    ]
    if not faster:
        return "no peer's fastest round beat ours' slowest."
    return (
        f"a peer's fastest round beat ours' slowest ({ours['max_seconds']:.2f} s) here: "
        + ", ".join(faster)
        + "; rounds move with the other jobs' load, so medians of the same rounds are compared."
    )


def _notes(r: dict) -> str:
    s = refresh_summary(r)
    texts = {k: f"{v['texts_per_round']:g}" for k, v in s.items()}
    stale = s["langchain_incremental"]["last"]["stale_vectors"]
    straddling = s["langchain_incremental"]["last"]["detail"].get("straddling_chunks", "?")
    others = ", ".join(
        f"{r['names'][k]} {v['last']['stale_vectors']}"
        for k, v in s.items()
        if k != "langchain_incremental" and v["last"]["stale_vectors"]
    )
    others = others or "none"
    lance = s["cocoindex_lancedb"]["median_seconds"]
    pg = s["cocoindex_postgres"]["median_seconds"]
    return f"""Where a peer wins or ties a column, and why:

- **Refresh wall time**: {_wall(r, s)} Every peer re-reads the whole corpus too (SciFact is
  one file; ours re-reads it because its stamp moved), so the gap is bookkeeping: ours compares
  content hashes against the last snapshot's manifest and writes only the changed rows, but it
  also records a snapshot, updates the chunks table and lineage columns, merges the new rows
  into the vector and full-text indexes, runs the consistency check and pins a serving version.
  LlamaIndex keeps one hash per document and does none of that: it deletes and re-adds whole
  documents, one `delete` per document; CocoIndex re-enters only the changed documents'
  components but checks each against its LMDB memo; LangChain hashes every chunk, looks each
  up in its SQLite record manager and rewrites every record's timestamp on every run ("full"
  cleanup then lists every record older than the run).
- **Initial build**: {_build_note(r)} Ours writes more in that time: the content-addressed
  snapshot and its manifest, the chunks table, lineage columns on every vector, the full-text
  index, the consistency check and a pinned serving version; LangChain and LlamaIndex write
  vectors plus their record manager or docstore. CocoIndex runs one memoised component per
  document and one memoised `embed` call per chunk (batched by its engine), each recorded in
  LMDB. One build each on a shared machine: a few percent either way is noise.
- **Texts embedded**: ours, CocoIndex and LangChain "full" embed only new chunk texts
  ({texts["ours"]}, {texts["cocoindex_lancedb"]}, {texts["langchain_full"]} per round). \
LlamaIndex ({texts["llamaindex"]}) keeps one hash per document, so
  a changed document runs its whole transformation chain again: every chunk of it is embedded.
  LangChain "incremental" ({texts["langchain_incremental"]}) cleans up after each 256-chunk \
batch: a document whose chunks straddle two
  batches loses the later ones after the first batch and gets them embedded again
  (up to {straddling} such chunks per run here; `cleanup="scoped_full"` waits for the end).
- **Stale vectors**: LangChain "incremental" leaves every deleted document's vectors
  ({stale} after the last round): it only cleans up source ids it is handed again; deletions need
  `cleanup="full"`, which must be handed the whole corpus on every run. Others with stale
  vectors left: {others}.
- **CocoIndex's two targets** (median {lance:.2f} s into LanceDB, {pg:.2f} s into PostgreSQL):
  not profiled; its LanceDB target checks table statistics for an automatic `optimize()` inline
  with its writes (its connector docs).

What each peer is, exactly: CocoIndex 1.0 keeps its state (declared target rows, memoised
results) in an embedded LMDB database; it has no PostgreSQL state store any more, so PostgreSQL
is used where 1.0 supports it, as a target: a table in a PostgreSQL 15 server from Debian's
package that the script starts on 127.0.0.1 (`embeddings_platform.testing.PgServer`), vectors as
`real[]` because Debian 12 ships no pgvector for it (CocoIndex maps vectors to pgvector by
default). Its LanceDB target is its own connector. LlamaIndex: `llama-index-vector-stores-lancedb`
0.6.0 with its `delete` fixed in the benchmark (it quotes ids with double quotes, a column name
since lancedb 0.38: every delete fails; run-llama/llama_index#23087); docstore
`SimpleDocumentStore` persisted after each run, transformation cache off
(`store_doc_text=False` would make its deletes fail: the docstore cannot find the document). All
sides run warm in one process, one after another: a comparison of bookkeeping, not the users'
path (bench_refresh.py's section)."""
