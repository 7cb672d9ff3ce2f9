"""A LanceDB cache of query vectors, so recall checks and gates rarely need the model."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

from ..ids import digest
from ..store import Store

QUERY_VECTORS = pa.schema(
    [
        pa.field("query_key", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("vector", pa.list_(pa.float32())),
    ]
)


QUERY_VECTORS_TABLE = "check_query_vectors"


def cached_query_embedder(store: Store, version_id: str, embed: Callable[[list[str]], np.ndarray]):
    """Wrap `embed` with a LanceDB cache of query vectors keyed on (model version, text).

    Labelled queries rarely change while the index does after every refresh: with the cache a
    recall check needs no model at all (loading MiniLM alone takes ~5 s per process here).
    The version id names the weights and settings, so a cached vector is never stale.
    """

    def key(text: str) -> str:
        return f"{version_id}:{digest(text, length=32)}"

    def run(texts: list[str]) -> list[np.ndarray]:
        keys = [key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        if store.has_table(QUERY_VECTORS_TABLE):
            rows = Store.read_in(
                store.open_table(QUERY_VECTORS_TABLE),
                ["query_key", "vector"],
                {"query_key": sorted(set(keys))},
            )
            for k, v in zip(
                rows.column("query_key").to_pylist(), rows.column("vector").to_pylist()
            ):
                found[k] = np.asarray(v, dtype=np.float32)
        todo: dict[str, int] = {}  # one embedding per distinct uncached text
        for i, k in enumerate(keys):
            if k not in found and k not in todo:
                todo[k] = i
        missing = list(todo.values())
        if missing:
            vectors = np.asarray(embed([texts[i] for i in missing]), dtype=np.float32)
            rows = [
                {"query_key": keys[i], "model_version": version_id, "vector": v.tolist()}
                for i, v in zip(missing, vectors)
            ]
            table = store.table(QUERY_VECTORS_TABLE, QUERY_VECTORS, "query_key")
            store.upsert(table, pa.Table.from_pylist(rows, schema=QUERY_VECTORS), "query_key")
            found.update({keys[i]: v for i, v in zip(missing, vectors)})
        return [found[k] for k in keys]

    return run
