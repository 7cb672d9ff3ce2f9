"""The CLI's migration commands: gate and swap (`migrate`), `rollback`, `cleanup`, and
`evaluate` (a labelled set against what serves or a shadow), plus the gate summary
`materialize` prints."""

from __future__ import annotations

import os
import sys

from .cli_output import clean, error, print_json
from .core.store import Store

MAX_K = 1000  # more hits than anyone reads; a huge -k only costs memory and time


class UsageError(ValueError):
    """A command-line mistake: exit code 2 with a one-line message."""


def _print_gates(config, sources: list[str]) -> None:
    """Each shadow version's migration gate against what serves (query vectors are cached, so
    this embeds nothing the gate checks of the run did not), and how to act on it."""
    from .core.evaluation import labelled_queries
    from .core.migration_gate import evaluate_gate, query_embedders
    from .core.models import model_version
    from .defs.resources import cached_embedder

    store = Store(config.storage_uri)
    embed_for = query_embedders(store, config, cached_embedder)
    lines = []
    for name in sources:
        pointer = store.pointer(name)
        for model in config.models:
            version = model_version(model).version_id
            if pointer is None or pointer["model_version"] == version:
                continue
            gate = evaluate_gate(
                store,
                name,
                version,
                labelled_queries(config.source(name)),
                embed_for,
                config.migration,
            )
            scores = (
                f"nDCG@{gate.k} {gate.candidate_ndcg:.3f} vs {gate.serving_ndcg:.3f} serving, "
                f"recall@{gate.k} {gate.candidate_recall:.3f} vs {gate.serving_recall:.3f}"
            )
            verdict = (
                f"passes ({scores}); swap it in: embeddings-platform migrate --source {name} "
                f"--model {model.name}"
                if gate.passed
                else f"fails: {'; '.join(gate.reasons)}"
            )
            lines.append(f"  {clean(name)} <- {clean(model.name)}: {clean(verdict)}")
    if lines:
        print("\nMigration gates (shadow versions against what serves):")
        print("\n".join(lines))


def cmd_migrate(args, config) -> int:
    """Gate a candidate (a model version's shadow index, a retrieval profile, or both) against
    what serves; swap only if it passes (or --force)."""
    from .core.evaluation import labelled_queries
    from .core.migration import MigrationError, swap
    from .core.migration_gate import evaluate_gate, query_embedders
    from .core.models import model_dimension, model_version
    from .core.retrieval import RetrievalProfile
    from .core.serving import model_for_version
    from .defs.resources import cached_embedder

    store = Store(config.storage_uri)
    source = config.source(args.source)
    pointer = store.pointer(source.name)
    if args.model is None and (pointer is None or args.mode is None):
        raise UsageError(
            "migrate: name a --model to migrate to, or a --mode to change how the "
            "serving model answers (a profile migration)"
        )
    version = (
        model_version(config.model(args.model)).version_id
        if args.model
        else pointer["model_version"]
    )
    profile = None
    if args.mode or args.rrf_k or args.depth:
        base = RetrievalProfile.from_json(pointer.get("profile")) if pointer else RetrievalProfile()
        profile = RetrievalProfile(
            mode=args.mode or base.mode,
            rrf_k=args.rrf_k or base.rrf_k,
            depth=args.depth or base.depth,
        )
    gate = evaluate_gate(
        store,
        source.name,
        version,
        labelled_queries(source),
        query_embedders(store, config, cached_embedder),
        config.migration,
        profile,
    )
    print_json(
        {
            "gate": {
                **gate.metadata,
                "reasons": gate.reasons,
                "candidate": gate.candidate_version,
                "candidate_profile": gate.candidate_profile,
                "serving": gate.serving_version,
                "serving_profile": gate.serving_profile,
            }
        }
    )
    try:
        row = swap(
            store,
            gate,
            run_id=f"cli-migrate-{os.getpid()}",
            expected_dimension=model_dimension(model_for_version(config, store, version)),
            force=args.force,
        )
    except MigrationError as exc:
        print(f"not swapped: {clean(exc)}", file=sys.stderr)
        return 1
    print(
        f"swapped: {args.source} now serves {row['model_version']} "
        f"({row['table_name']}@v{row['table_version']}, {gate.candidate_profile})"
    )
    return 0


def cmd_evaluate(args, config) -> int:
    """Score a BEIR-format labelled set against what serves (or a shadow version): one process,
    one model load; optionally write the ranking as a TREC run file."""
    from pathlib import Path

    from .core.evaluation import load_labelled, write_trec_run
    from .core.migration_gate import query_embedders
    from .core.models import model_version
    from .core.scoring import score_labelled_set
    from .defs.resources import cached_embedder

    if not 1 <= args.k <= MAX_K:
        raise UsageError(f"evaluate -k: {args.k} is out of range; use 1 to {MAX_K}")
    source = config.source(args.source)
    try:
        queries = load_labelled(Path(args.queries), Path(args.qrels))
    except (OSError, ValueError) as exc:
        raise UsageError(f"evaluate: {exc}") from exc
    store = Store(config.storage_uri)
    version = model_version(config.model(args.model)).version_id if args.model else None
    scored = score_labelled_set(
        store,
        source.name,
        queries,
        query_embedders(store, config, cached_embedder),
        args.k,
        max(args.k, args.depth),
        version,
        args.mode,
    )
    if args.run:
        write_trec_run(Path(args.run), scored.rankings, f"embeddings_platform-{scored.profile}")
    print_json({**scored.summary(), "run_file": args.run})
    return 0


def cmd_rollback(args, config) -> int:
    from .core.migration import MigrationError, rollback

    try:
        row = rollback(
            Store(config.storage_uri),
            args.source,
            f"cli-rollback-{os.getpid()}",
            config.serving.retention_hours,
            partition_keys=config.source(args.source).partition_keys,
        )
    except MigrationError as exc:
        error(exc)
        return 1
    print(
        f"rolled back: {args.source} serves {row['model_version']} "
        f"({row['table_name']}@v{row['table_version']}) again"
    )
    return 0


def cmd_cleanup(args, config) -> int:
    from .core.retention import cleanup

    report = cleanup(Store(config.storage_uri), config)
    print_json(report.__dict__)
    return 0
