"""Score any labelled query set against what serves, or against a shadow model version.

The CLI's `evaluate`: one process, one model load, the same ranking as search (the served
retrieval profile, or a mode given for this run), recall@k and nDCG@k, and the full ranking
for a TREC run file so teams can compare with other tools on their own labels.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .evaluation import LabelledQuery, ndcg_at_k, recall_at_k
from .retrieval import RetrievalProfile, rank_documents
from .serving import NotServingError
from .sharding import owner
from .store import Store, latest_serve_tag, vectors_table_name


@dataclass
class Scored:
    source: str
    model_version: str
    table_name: str
    table_version: int
    profile: str
    k: int
    queries: int
    recall: float
    ndcg: float
    seconds: float
    serving: bool
    rankings: list[tuple[str, list[tuple[str, float]]]] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "rankings"}


def score_labelled_set(
    store: Store,
    source: str,
    queries: Sequence[LabelledQuery],
    embed_for: Callable[[str], Callable[[list[str]], object]],
    k: int = 10,
    depth: int = 100,
    version_id: str | None = None,
    mode: str | None = None,
) -> Scored:
    """recall@k and nDCG@k of `queries` on the served table (or `version_id`'s newest indexed
    one), ranked `depth` documents deep for the run file."""
    if not queries:
        raise ValueError("no judged queries to score (queries without qrels are skipped)")
    source = owner(source)
    pointer = store.pointer(source)
    if pointer is None:
        raise NotServingError(
            f"source {source!r} has no serving index yet; materialize serving_index first"
        )
    profile = RetrievalProfile.from_json(pointer.get("profile"))
    if mode is not None:
        profile = dataclasses.replace(profile, mode=mode)
    version_id = version_id or pointer["model_version"]
    name = vectors_table_name(source, version_id)
    serving = version_id == pointer["model_version"]
    if serving:
        table_version = int(pointer["table_version"])
    else:
        table_version = latest_serve_tag(store.open_table(name)) if store.has_table(name) else None
        if table_version is None:
            raise LookupError(
                f"{version_id} has no indexed table for {source}; materialize its serving_index"
            )
    started = time.perf_counter()
    table = store.open_table(name, table_version)
    texts = [q.text for q in queries]
    vectors = embed_for(version_id)(texts) if profile.uses_vectors else None
    ranked = rank_documents(table, texts, vectors, profile, max(k, depth))
    ids = [[hit.doc_id for hit in hits] for hits in ranked]
    recall = sum(recall_at_k(r, q.relevant, k) for r, q in zip(ids, queries)) / len(queries)
    ndcg = sum(ndcg_at_k(r, q.relevant, k) for r, q in zip(ids, queries)) / len(queries)
    return Scored(
        source,
        version_id,
        name,
        table_version,
        profile.profile_id,
        k,
        len(queries),
        recall,
        ndcg,
        time.perf_counter() - started,
        serving,
        [(q.query_id, [(h.doc_id, h.score) for h in hits]) for q, hits in zip(queries, ranked)],
    )
