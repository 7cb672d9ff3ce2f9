"""`embeddings-platform`: run the graph, search, and answer lineage and status questions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pyarrow as pa

from .cli_migration import (
    MAX_K,
    UsageError,
    _print_gates,
    cmd_cleanup,
    cmd_evaluate,
    cmd_migrate,
    cmd_rollback,
)
from .cli_output import (
    clean,
    error,
    failure_reason,
    print_hits,
    print_json,
    print_status,
    storage_error,
    table_error,
)
from .core.config import (
    ConfigError,
    SourceError,
    load_config,
)
from .core.serving import (
    NotServingError,
    TableReadError,
    lineage,
    reading,
)
from .core.status import source_problem, status
from .core.store import Store

READ_COMMANDS = ("search", "status", "lineage", "evaluate")


def _dagster_home(config) -> Path:
    """The persistent Dagster instance's folder `dagster dev` shows: DAGSTER_HOME, else
    `.dagster_home` beside the config (exported, so the runs find it too)."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(config.config_path).parent / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home.resolve()


def _search(config, source: str, query: str, k: int, mode: str | None):
    """Through the Python API: the model is loaded once per process (api.Searcher)."""
    from .api import Searcher

    return Searcher(config).search(query, source, k, mode)


def _registered(chosen: list[str] | None, known: list[str], what: str, config) -> list[str]:
    """The chosen names (all by default); an unknown one is an error, not an empty build."""
    if not known:
        raise UsageError(f"no {what}s registered in {config.config_path}; add one under {what}s:")
    unknown = [name for name in chosen or [] if name not in known]
    if unknown:
        raise UsageError(
            f"materialize --{what}: no {what} named {unknown[0]!r} is registered; "
            f"registered {what}s: {', '.join(known)}"
        )
    return list(dict.fromkeys(chosen)) if chosen else known


def cmd_materialize(args, config) -> int:
    """Build every chosen source; one that fails is reported, and the others still build.

    The terminal gets one line per step as each run ends; Dagster's full log (DEBUG events,
    whatever libraries print) goes to a file named up front.
    """
    from .cli_runs import log_path, output_into, run_lines
    from .defs.runner import materialize_graph

    sources = _registered(args.source, [s.name for s in config.sources], "source", config)
    models = _registered(args.model, [m.name for m in config.models], "model", config)
    failed = {name: problem for name in sources if (problem := source_problem(config.source(name)))}
    from dagster import DagsterInstance

    print(_where(config))
    log = log_path(_dagster_home(config))
    print(f"Dagster log of these runs: {log}", flush=True)
    with output_into(log):  # its notices (no dagster.yaml yet, telemetry) belong to the log
        instance = DagsterInstance.get()
    with instance:  # disposed on exit, as the CLI leaves it
        for name in (n for n in sources if n not in failed):
            results = materialize_graph(
                instance,
                config,
                [name],
                models,
                raise_on_error=False,
                on_run=lambda result: print(*run_lines(result), sep="\n", flush=True),
                around=lambda: output_into(log),
            )
            failure = next((r for r in results if not r.success), None)
            if failure is not None:
                failed[name] = failure_reason(failure)
    print("\nBuilt:")
    print_status(status(Store(config.storage_uri), config), config)
    built = [name for name in sources if name not in failed]
    _print_gates(config, built)
    if built and not args.no_sample:
        print(f'\nSample search on {built[0]!r}: "{clean(args.sample_query)}"')
        print_hits(_search(config, built[0], args.sample_query, 3, None))
    print(f"\nFull Dagster log: {log}")
    print(
        f"Runs are recorded in DAGSTER_HOME={os.environ['DAGSTER_HOME']}; "
        "see them with: make ui  (dagster dev -w workspace.yaml -h 127.0.0.1)"
    )
    for name in (n for n in sources if n in failed):
        print(f"failed: source {clean(name)}: {clean(failed[name])}", file=sys.stderr)
    return 1 if failed else 0


def cmd_prepare(args, config) -> int:
    """Make the files model versions are made of (distilled, exported), so runs need not."""
    from .core.models import model_is_prepared, prepare_model

    for model in config.models:
        ready = model_is_prepared(model)
        if not ready:
            print(f"preparing {model.name} ({model.kind}) ...", flush=True)
            prepare_model(model)
        print(f"{model.name}: {'ready' if ready else 'prepared'}")
    return 0


def cmd_search(args, config) -> int:
    if not 1 <= args.k <= MAX_K:
        raise UsageError(f"search -k: {args.k} is out of range; ask for 1 to {MAX_K} hits")
    if not args.query.strip():
        raise UsageError("search: the query is empty; give the words to search for")
    config.source(args.source)  # an unregistered source or a bad shard key: say so, list them
    hits = _search(config, args.source, args.query, args.k, args.mode)
    if args.json:
        print_json([h.__dict__ for h in hits])
    else:
        print_hits(hits)
    return 0


def cmd_status(args, config) -> int:
    """Every row, a broken source's too: its error is shown and the others still report."""
    rows = status(Store(config.storage_uri), config)
    if args.json:
        print_json(rows)
    else:
        print(_where(config))
        print_status(rows, config)
    return 0


def cmd_lineage(args, config) -> int:
    store = Store(config.storage_uri)
    rows = lineage(store, config, args.id)
    with reading("serving_pointers"):
        pointers = {p["source"]: p for p in store.pointers()}
    with reading("serving_history"):
        history = {source: store.pointer_history(source) for source in pointers}
    print_json({"vectors": rows, "serving": pointers, "serving_history": history})
    return 0 if rows else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embeddings-platform", description=__doc__)
    parser.add_argument(
        "--config",
        help="registry YAML (default: embeddings_platform.yaml in this folder or the nearest "
        "parent, else $EMBEDDINGS_PLATFORM_CONFIG)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser(
        "materialize", help="run the asset graph (the main job) and print what it built"
    )
    m.add_argument("--source", action="append", help="only this source (repeatable)")
    m.add_argument("--model", action="append", help="only this model name (repeatable)")
    m.add_argument("--sample-query", default="how do I catch an exception and re-raise it")
    m.add_argument("--no-sample", action="store_true", help="skip the sample search")
    m.set_defaults(func=cmd_materialize)

    pr = sub.add_parser("prepare", help="distil or export the model versions that are made locally")
    pr.set_defaults(func=cmd_prepare)

    s = sub.add_parser("search", help="search a source through its serving index")
    s.add_argument("query")
    s.add_argument("--source", required=True)
    s.add_argument("-k", type=int, default=10, help=f"number of hits, 1 to {MAX_K}")
    s.add_argument(
        "--mode",
        choices=["vector", "fts", "hybrid"],
        default=None,
        help="override the served retrieval profile's mode for this query",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    st = sub.add_parser(
        "status",
        help="documents, chunks, vectors, what serves and whether it "
        "can be read, per source x model",
    )
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    li = sub.add_parser(
        "lineage", help="which snapshot, chunker, model and run made each vector of a doc or chunk"
    )
    li.add_argument("id", help="a doc_id or chunk_id")
    li.set_defaults(func=cmd_lineage)

    mg = sub.add_parser(
        "migrate", help="gate a model version's shadow index against what serves, then swap"
    )
    mg.add_argument("--source", required=True)
    mg.add_argument("--model", help="model name from the config (default: the serving one)")
    mg.add_argument(
        "--mode",
        choices=["vector", "fts", "hybrid"],
        help="retrieval mode to serve with (default: the serving profile's)",
    )
    mg.add_argument("--rrf-k", type=int, help="reciprocal-rank fusion constant of a hybrid profile")
    mg.add_argument(
        "--depth", type=int, help="chunks fetched per list before folding into documents"
    )
    mg.add_argument(
        "--force", action="store_true", help="swap even if the gate fails (a deliberate decision)"
    )
    mg.set_defaults(func=cmd_migrate)

    ev = sub.add_parser(
        "evaluate",
        help="score BEIR-format queries and qrels against what serves "
        "(or a shadow version); write a TREC run file",
    )
    ev.add_argument("--source", required=True)
    ev.add_argument(
        "--queries", required=True, help='queries.jsonl: {"_id": ..., "text": ...} per line'
    )
    ev.add_argument("--qrels", required=True, help="qrels TSV: query-id, corpus-id, score")
    ev.add_argument(
        "--mode", choices=["vector", "fts", "hybrid"], help="override the served profile's mode"
    )
    ev.add_argument("--model", help="score this model's shadow index instead of what serves")
    ev.add_argument("-k", type=int, default=10, help="cut-off of recall@k and nDCG@k")
    ev.add_argument("--depth", type=int, default=100, help="documents per query in the run file")
    ev.add_argument("--run", help="write the ranking here as a TREC run file")
    ev.set_defaults(func=cmd_evaluate)

    rb = sub.add_parser(
        "rollback", help="serve the previous target again (within serving.retention_hours)"
    )
    rb.add_argument("--source", required=True)
    rb.set_defaults(func=cmd_rollback)

    cl = sub.add_parser(
        "cleanup", help="retention expiry: drop what stopped serving longer ago than the window"
    )
    cl.set_defaults(func=cmd_cleanup)
    return parser


def _config_path(given: str | None):
    """--config, else embeddings_platform.yaml here or in a parent folder (as git finds its
    repository), else $EMBEDDINGS_PLATFORM_CONFIG; never a file the user did not point at."""
    from .api import resolve_config

    return resolve_config(given)


def _where(config) -> str:
    return f"config {config.config_path}, storage {config.storage_uri}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(_config_path(args.config))
    except ConfigError as exc:
        error(exc)
        return 2
    try:
        return args.func(args, config)
    except TableReadError as exc:
        error(table_error(exc, config))
        return 1
    except (ConfigError, SourceError, UsageError, NotServingError, LookupError) as exc:
        error(exc)
        return 2
    except (OSError, RuntimeError, pa.ArrowException) as exc:  # storage, outside a named table
        if args.command not in READ_COMMANDS:
            raise
        error(storage_error(exc, config.storage_uri))
        return 1


if __name__ == "__main__":
    sys.exit(main())
