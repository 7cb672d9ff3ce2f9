"""What the source kinds' tests share: a registered source x the hashing model refreshed without
an orchestrator, the rows of the edit cycle, and a read counter."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from embeddings_platform.core.config import load_config
from embeddings_platform.core.documents import read_source
from embeddings_platform.core.models import HashingEmbedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import embedder_query_function, search
from embeddings_platform.core.stages.snapshot import take_snapshot
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.defs.resources import cached_embedder
from embeddings_platform.testing import write_config

# one short text per document: one chunk each, so texts embedded == documents embedded
ROWS = {
    "a": "Cats purr and hunt mice at night.",
    "b": "Dogs bark and fetch sticks.",
    "c": "Owls glide silently over fields.",
    "d": "Tea is brewed from leaves.",
}
EDITED = {
    **{k: v for k, v in ROWS.items() if k != "c"},
    "b": "Dogs guard the house loudly.",
    "e": "Rust compiles to fast code.",
}


class Cell:
    """One registered source x the hashing model, refreshed without an orchestrator."""

    def __init__(self, tmp_path: Path, source: dict, **registry):
        self.config = load_config(write_config(tmp_path / "platform.yaml", [source], **registry))
        self.source = self.config.sources[0]
        self.model = self.config.models[0]
        self.store = Store(self.config.storage_uri)
        self.runs = 0

    def refresh(self) -> set[str]:
        """Refresh once; the documents whose chunks this run embedded (model calls counted)."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        embedder = HashingEmbedder(self.model.dimension)
        refresh(self.store, self.source, self.model, self.config.serving, lambda: embedder, run_id)
        rows = self.vectors()
        embedded = [r["doc_id"] for r in rows if r["run_id"] == run_id]
        assert embedder.texts_embedded == len(embedded)
        return set(embedded)

    def snapshot(self, full: bool = False):
        """Only the snapshot step (what a snapshot run's first asset does)."""
        self.runs += 1
        return take_snapshot(
            self.store, self.source, f"run-{self.runs}", self.config.documents, full
        )

    def vectors(self) -> list[dict]:
        name = vectors_table_name(self.source.name, model_version(self.model).version_id)
        return self.store.db.open_table(name).to_arrow().to_pylist()

    def found(self, query: str) -> set[str]:
        embed = embedder_query_function(self.config, self.store, cached_embedder, query)
        return {hit.doc_id for hit in search(self.store, self.source.name, query, 10, embed)}

    def manifest(self) -> dict[str, str]:
        """doc id -> content hash of the newest snapshot."""
        latest = self.store.latest_snapshot(self.source.name)
        manifest = self.store.snapshot_manifest(self.source.name, latest["snapshot_id"])
        return {doc_id: sha for doc_id, (sha, _) in manifest.items()}


def check_edit_cycle(cell: Cell, write) -> None:
    """First build, nothing-changed, then edit b, delete c, insert e."""
    write(ROWS)
    assert cell.refresh() == set(ROWS)
    assert "c" in cell.found("owls glide silently")
    assert cell.refresh() == set()
    write(EDITED)
    assert cell.refresh() == {"b", "e"}
    assert "c" not in cell.found("owls glide silently over fields")
    assert {r["doc_id"] for r in cell.vectors()} == set(EDITED)
    assert "b" in cell.found("dogs guard the house")


def reasons(source) -> dict[str, str]:
    return {r.doc_id: r.reason for r in read_source(source)[1]}


# --- writing each kind's rows ----------------------------------------------------------


def write_parquet(path: Path, rows: dict[str, str]) -> None:
    table = pa.table(
        {
            "key": list(rows),
            "title": [f"T{k}" for k in rows],
            "body": list(rows.values()),
            "lang": ["en"] * len(rows),
        }
    )
    pq.write_table(table, path, row_group_size=2)  # several row groups: read batch by batch


def parquet_source(tmp_path, **settings) -> dict:
    return {
        "name": "books",
        "kind": "parquet",
        "path": str(tmp_path / "books.parquet"),
        "id_column": "key",
        "text_columns": ["body"],
        **settings,
    }


def pg_write(pg, table: str, rows: dict[str, str]) -> None:
    """Make the table hold exactly rows: delete the others, update changed ones, insert new."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        current = dict(conn.execute(f"SELECT key, body FROM {table}").fetchall())
        for key in set(current) - set(rows):
            conn.execute(f"DELETE FROM {table} WHERE key = %s", (key,))
        for key, body in rows.items():
            if key not in current:
                conn.execute(
                    f"INSERT INTO {table} (key, body, lang) VALUES (%s, %s, 'en')", (key, body)
                )
            elif current[key] != body:
                conn.execute(
                    f"UPDATE {table} SET body = %s, updated_at = clock_timestamp() WHERE key = %s",
                    (body, key),
                )


def postgres_source(table: str, **settings) -> dict:
    return {
        "name": "crm",
        "kind": "postgres",
        "table": f"public.{table}",
        "id_column": "key",
        "text_columns": ["body"],
        "updated_at_column": "updated_at",
        **settings,
    }


ICEBERG_SCHEMA = pa.schema(
    [("key", pa.string()), ("body", pa.string()), ("raw", pa.binary()), ("lang", pa.string())]
)


def iceberg_catalog(tmp_path) -> dict:
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"file://{tmp_path}/warehouse",
    }


def iceberg_table(tmp_path):
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("lake", **iceberg_catalog(tmp_path))
    catalog.create_namespace("docs")
    return catalog.create_table("docs.notes", schema=ICEBERG_SCHEMA)


def iceberg_rows(rows: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "key": list(rows),
            "body": list(rows.values()),
            "raw": pa.array([None] * len(rows), pa.binary()),
            "lang": ["en"] * len(rows),
        },
        schema=ICEBERG_SCHEMA,
    )


def iceberg_source(tmp_path, **settings) -> dict:
    return {
        "name": "lake",
        "kind": "iceberg",
        "catalog": iceberg_catalog(tmp_path),
        "catalog_name": "lake",
        "table": "docs.notes",
        "id_column": "key",
        "text_columns": ["body"],
        **settings,
    }


def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
