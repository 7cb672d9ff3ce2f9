"""`embeddings-platform`: run the graph, search, and answer lineage and status questions."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from .core.config import ConfigError, load_config
from .core.serving import NotServingError, embedder_query_function, format_json, lineage, search, status
from .core.store import Store


def _instance(config):
    """The persistent Dagster instance `dagster dev` shows (DAGSTER_HOME, default next to the config)."""
    from dagster import DagsterInstance

    home = Path(os.environ.get("DAGSTER_HOME") or Path(config.config_path).parent / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return DagsterInstance.get()


def _print_hits(hits) -> None:
    for rank, hit in enumerate(hits, start=1):
        snippet = textwrap.shorten(" ".join(hit.text.split()), 160)
        print(f"{rank:>2}. {hit.score:.3f}  {hit.doc_id}  [{hit.chunk_id}]")
        print(f"    {snippet}")
        lin = hit.lineage
        print(f"    model={lin['model_version']} snapshot={lin['source_snapshot']} "
              f"doc_sha256={lin['doc_sha256'][:12]} strategy={lin['chunking_strategy']} run={lin['run_id']}")


def _search(config, source: str, query: str, k: int, mode: str):
    from .defs.resources import cached_embedder

    store = Store(config.storage_uri)
    embed = embedder_query_function(config, store, cached_embedder, query)
    return search(store, source, query, k, embed, mode)


def cmd_materialize(args, config) -> int:
    from .defs.runner import materialize_graph

    with _instance(config) as instance:  # disposed on exit, as the CLI leaves it
        materialize_graph(instance, config, args.source or None, args.model or None)
    print("Built:")
    _print_status(config)
    if not args.no_sample:
        source = (args.source or [config.sources[0].name])[0]
        query = args.sample_query
        print(f'\nSample search on {source!r}: "{query}"')
        _print_hits(_search(config, source, query, 3, "vector"))
    print(f"\nRuns are recorded in DAGSTER_HOME={os.environ['DAGSTER_HOME']}; "
          "see them with: make ui  (dagster dev -w workspace.yaml -h 127.0.0.1)")
    return 0


def _print_status(config) -> None:
    rows = status(Store(config.storage_uri), config)
    header = f"{'source':<16}{'model version':<24}{'docs':>7}{'quar.':>6}{'chunks':>8}{'vectors':>9}{'tbl v':>7}  serving"
    print(header)
    for r in rows:
        serving = f"yes (v{r['served_table_version']} since {r['serving_since'][:19]})" if r["serving"] else "no (shadow)"
        print(f"{r['source']:<16}{r['model_version']:<24}{r['documents']:>7}{r['quarantined']:>6}"
              f"{r['chunks']:>8}{r['vectors']:>9}{str(r['table_version'] or '-'):>7}  {serving}")


def cmd_search(args, config) -> int:
    hits = _search(config, args.source, args.query, args.k, args.mode)
    if args.json:
        print(format_json([h.__dict__ for h in hits]))
    else:
        _print_hits(hits)
    return 0


def cmd_status(args, config) -> int:
    if args.json:
        print(format_json(status(Store(config.storage_uri), config)))
    else:
        _print_status(config)
    return 0


def cmd_lineage(args, config) -> int:
    store = Store(config.storage_uri)
    rows = lineage(store, config, args.id)
    pointers = {p["source"]: p for p in store.pointers()}
    history = {source: store.pointer_history(source) for source in pointers}
    print(format_json({"vectors": rows, "serving": pointers, "serving_history": history}))
    return 0 if rows else 1


def cmd_migrate(args, config) -> int:
    """Gate the model's shadow index against what serves; swap only if it passes (or --force)."""
    from .core.models import model_dimension
    from .core.evaluation import labelled_queries
    from .core.migration import MigrationError, evaluate_gate, query_embedders, swap
    from .core.models import model_version
    from .defs.resources import cached_embedder

    store = Store(config.storage_uri)
    model = config.model(args.model)
    gate = evaluate_gate(store, args.source, model_version(model).version_id,
                         labelled_queries(config.source(args.source)),
                         query_embedders(store, config, cached_embedder), config.migration)
    print(format_json({"gate": {**gate.metadata, "reasons": gate.reasons,
                                "candidate": gate.candidate_version, "serving": gate.serving_version}}))
    try:
        row = swap(store, gate, run_id=f"cli-migrate-{os.getpid()}", expected_dimension=model_dimension(model),
                   force=args.force)
    except MigrationError as exc:
        print(f"not swapped: {exc}", file=sys.stderr)
        return 1
    print(f"swapped: {args.source} now serves {row['model_version']} ({row['table_name']}@v{row['table_version']})")
    return 0


def cmd_rollback(args, config) -> int:
    from .core.migration import MigrationError, rollback

    try:
        row = rollback(Store(config.storage_uri), args.source, f"cli-rollback-{os.getpid()}",
                       config.serving.retention_hours, partition_keys=config.source(args.source).partition_keys)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rolled back: {args.source} serves {row['model_version']} ({row['table_name']}@v{row['table_version']}) again")
    return 0


def cmd_cleanup(args, config) -> int:
    from .core.migration import cleanup

    report = cleanup(Store(config.storage_uri), config)
    print(format_json(report.__dict__))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embeddings-platform", description=__doc__)
    parser.add_argument("--config", help="registry YAML (default: $EMBEDDINGS_PLATFORM_CONFIG or the bundled one)")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("materialize", help="run the asset graph (the main job) and print what it built")
    m.add_argument("--source", action="append", help="only this source (repeatable)")
    m.add_argument("--model", action="append", help="only this model name (repeatable)")
    m.add_argument("--sample-query", default="how do I catch an exception and re-raise it")
    m.add_argument("--no-sample", action="store_true", help="skip the sample search")
    m.set_defaults(func=cmd_materialize)

    s = sub.add_parser("search", help="search a source through its serving index")
    s.add_argument("query")
    s.add_argument("--source", required=True)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--mode", choices=["vector", "fts"], default="vector")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    st = sub.add_parser("status", help="documents, chunks, vectors and what serves, per source x model")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    li = sub.add_parser("lineage", help="which snapshot, chunker, model and run made each vector of a doc or chunk")
    li.add_argument("id", help="a doc_id or chunk_id")
    li.set_defaults(func=cmd_lineage)

    mg = sub.add_parser("migrate", help="gate a model version's shadow index against what serves, then swap")
    mg.add_argument("--source", required=True)
    mg.add_argument("--model", required=True, help="model name from the config")
    mg.add_argument("--force", action="store_true", help="swap even if the gate fails (a deliberate decision)")
    mg.set_defaults(func=cmd_migrate)

    rb = sub.add_parser("rollback", help="serve the previous target again (within serving.retention_hours)")
    rb.add_argument("--source", required=True)
    rb.set_defaults(func=cmd_rollback)

    cl = sub.add_parser("cleanup", help="retention expiry: drop what stopped serving longer ago than the window")
    cl.set_defaults(func=cmd_cleanup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        return args.func(args, config)
    except (ConfigError, NotServingError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
