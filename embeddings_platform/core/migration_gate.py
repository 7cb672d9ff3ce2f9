"""The migration gate: does a candidate (model version, retrieval profile) rank the labelled
queries no worse than what serves, by more than the configured margins? Read-only: the gate
decides, `migration.swap` moves the pointer. Both sides are scored through the same ranking as
search, on the same queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .config import MigrationConfig, PlatformConfig
from .evaluation import LabelledQuery, evaluate, table_retriever
from .retrieval import RetrievalProfile
from .sharding import owner
from .store import Store, latest_serve_tag, vectors_table_name

EmbedFor = Callable[[str], Callable[[list[str]], np.ndarray]]  # version id -> batch embed function


def query_embedders(store: Store, config: PlatformConfig, load: Callable) -> EmbedFor:
    """version id -> embed function for queries, through the check's query-vector cache, so a
    gate evaluated again embeds nothing it embedded before (and loads no model for it)."""
    from .checks import cached_query_embedder
    from .serving import model_for_version

    def embed_for(version_id: str):
        return cached_query_embedder(
            store,
            version_id,
            lambda texts: load(model_for_version(config, store, version_id)).embed(texts),
        )

    return embed_for


@dataclass
class GateReport:
    source: str
    candidate_version: str
    candidate_table_version: int | None
    serving_version: str | None
    queries: int
    k: int
    candidate_recall: float = 0.0
    candidate_ndcg: float = 0.0
    serving_recall: float = 0.0
    serving_ndcg: float = 0.0
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    evaluable: bool = True  # False: too few labelled queries to judge at all
    candidate_profile: str = ""  # retrieval profile ids
    serving_profile: str = ""
    profile_json: str = ""  # the candidate profile, as the pointer records it
    serving_table_version: int = 0

    @property
    def serving_target(self) -> str:
        """What this gate compared with (see `serving_target`)."""
        return target_label(self.serving_version, self.serving_profile)

    @property
    def metadata(self) -> dict[str, float | int]:
        """Numbers the UI plots: both sides and their difference."""
        return {
            "queries": self.queries,
            "k": self.k,
            "passed": int(self.passed),
            "candidate_recall": round(self.candidate_recall, 4),
            "candidate_ndcg": round(self.candidate_ndcg, 4),
            "serving_recall": round(self.serving_recall, 4),
            "serving_ndcg": round(self.serving_ndcg, 4),
            "recall_delta": round(self.candidate_recall - self.serving_recall, 4),
            "ndcg_delta": round(self.candidate_ndcg - self.serving_ndcg, 4),
            "evaluable": int(self.evaluable),
        }


def target_label(model_version: str | None, profile_id: str) -> str:
    """Model version and retrieval profile id as one value ('' while nothing serves)."""
    return f"{model_version} {profile_id}" if model_version else ""


def serving_target(pointer: dict | None) -> str:
    """What serves a source as far as a gate is concerned: model version and retrieval profile.
    A gate evaluated against another target is out of date (swap, rollback, profile change)."""
    if pointer is None:
        return ""
    profile = RetrievalProfile.from_json(pointer.get("profile"))
    return target_label(pointer["model_version"], profile.profile_id)


def evaluate_gate(
    store: Store,
    source: str,
    candidate_version: str,
    queries: Sequence[LabelledQuery],
    embed_for: EmbedFor,
    gate: MigrationConfig = MigrationConfig(),
    candidate_profile: RetrievalProfile | None = None,
) -> GateReport:
    """Evaluate a candidate (model version, retrieval profile) against what serves, on the same
    labelled queries and through the same ranking as search.

    Not evaluable (and so not passed) without enough labelled queries; never passed while
    nothing serves, because there is nothing to compare with. The candidate profile defaults
    to the one that serves: a model migration keeps how queries are answered.
    """
    source = owner(source)
    pointer = store.pointer(source)
    serving_profile = RetrievalProfile.from_json(pointer.get("profile")) if pointer else None
    candidate_profile = candidate_profile or serving_profile or RetrievalProfile()
    report = GateReport(
        source,
        candidate_version,
        None,
        pointer["model_version"] if pointer else None,
        len(queries),
        gate.k,
        candidate_profile=candidate_profile.profile_id,
        serving_profile=serving_profile.profile_id if serving_profile else "",
    )
    report.profile_json = candidate_profile.to_json()
    name = vectors_table_name(source, candidate_version)
    if not store.has_table(name):
        report.reasons.append(
            f"no table {name}; materialize embeddings and serving_index for this model first"
        )
        return report
    table = store.open_table(name)
    report.candidate_table_version = latest_serve_tag(table)
    if report.candidate_table_version is None:
        report.reasons.append(
            f"{name} has no serving index yet; materialize serving_index for this model first"
        )
        return report
    if len(queries) < gate.min_queries:
        report.evaluable = False
        report.reasons.append(
            f"not evaluable: {len(queries)} labelled queries (< migration.min_queries "
            f"{gate.min_queries}); register a canary file (sources[].canary) or BEIR qrels with "
            "the source (docs/operator.md)"
        )
        return report
    table.checkout(report.candidate_table_version)
    candidate = evaluate(
        queries, table_retriever(table, embed_for(candidate_version), gate.k, candidate_profile)
    )
    report.candidate_recall, report.candidate_ndcg = candidate.recall, candidate.ndcg
    if pointer is None:
        report.reasons.append(
            "nothing serves this source yet, so there is nothing to compare with; "
            "materialize serving_index of its default model first"
        )
        return report
    served = store.open_table(pointer["table_name"], pointer["table_version"])
    current = evaluate(
        queries,
        table_retriever(served, embed_for(pointer["model_version"]), gate.k, serving_profile),
    )
    report.serving_recall, report.serving_ndcg = current.recall, current.ndcg
    report.serving_table_version = int(pointer["table_version"])
    if report.candidate_recall < report.serving_recall - gate.max_recall_drop:
        report.reasons.append(
            f"recall@{gate.k} {report.candidate_recall:.4f} is more than {gate.max_recall_drop} "
            f"below the serving {report.serving_recall:.4f}"
        )
    if report.candidate_ndcg < report.serving_ndcg - gate.max_ndcg_drop:
        report.reasons.append(
            f"nDCG@{gate.k} {report.candidate_ndcg:.4f} is more than {gate.max_ndcg_drop} below "
            f"the serving {report.serving_ndcg:.4f}"
        )
    report.passed = not report.reasons
    return report
