"""The table source kinds (parquet, postgres, iceberg) through a real refresh.

Each kind: a first build, then an edit, a delete and an insert, refreshed through
`core.pipeline.refresh` with the hashing model; exactly the edited and inserted documents are
embedded again, the deleted one is no longer found; bad rows reach quarantine with their
reason; an unreadable source is a SourceError naming the setting; `signature()` moves only
when the content may have.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embeddings_platform.core.config import DocumentsConfig, load_config
from embeddings_platform.core.documents import Rejected, read_source
from embeddings_platform.core.models import HashingEmbedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.refresh import listing_signature
from embeddings_platform.core.registry import SourceError
from embeddings_platform.core.serving import embedder_query_function, search
from embeddings_platform.core.sources.postgres import redacted
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

    def __init__(self, tmp_path: Path, source: dict):
        self.config = load_config(write_config(tmp_path / "platform.yaml", [source]))
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

    def vectors(self) -> list[dict]:
        name = vectors_table_name(self.source.name, model_version(self.model).version_id)
        return self.store.db.open_table(name).to_arrow().to_pylist()

    def found(self, query: str) -> set[str]:
        embed = embedder_query_function(self.config, self.store, cached_embedder, query)
        return {hit.doc_id for hit in search(self.store, self.source.name, query, 10, embed)}


def _check_edit_cycle(cell: Cell, write) -> None:
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


def _reasons(source) -> dict[str, str]:
    return {r.doc_id: r.reason for r in read_source(source)[1]}


# --- parquet -----------------------------------------------------------------------------------


def _write_parquet(path: Path, rows: dict[str, str]) -> None:
    table = pa.table(
        {
            "key": list(rows),
            "title": [f"T{k}" for k in rows],
            "body": list(rows.values()),
            "lang": ["en"] * len(rows),
        }
    )
    pq.write_table(table, path, row_group_size=2)  # several row groups: read batch by batch


def _parquet(tmp_path, **settings) -> dict:
    return {
        "name": "books",
        "kind": "parquet",
        "path": str(tmp_path / "books.parquet"),
        "id_column": "key",
        "text_columns": ["body"],
        **settings,
    }


def test_parquet_edit_delete_insert_embeds_exactly_the_changes(tmp_path):
    cell = Cell(tmp_path, _parquet(tmp_path, metadata_columns=["lang"]))
    _check_edit_cycle(cell, lambda rows: _write_parquet(tmp_path / "books.parquet", rows))
    assert {r["doc_id"]: r["metadata_json"] for r in cell.vectors()}["a"] == '{"lang": "en"}'


def test_parquet_folder_reads_every_file_in_batches(tmp_path):
    (tmp_path / "parts").mkdir()
    _write_parquet(tmp_path / "parts" / "1.parquet", {"a": ROWS["a"], "b": ROWS["b"]})
    _write_parquet(tmp_path / "parts" / "2.parquet", {"c": ROWS["c"]})
    source = Cell(
        tmp_path, _parquet(tmp_path, path=str(tmp_path / "parts"), text_columns=["title", "body"])
    ).source
    docs = {d.doc_id: d.text for d in read_source(source)[0]}
    assert docs == {"a": f"Ta\n\n{ROWS['a']}", "b": f"Tb\n\n{ROWS['b']}", "c": f"Tc\n\n{ROWS['c']}"}
    glob = Cell(tmp_path, _parquet(tmp_path, path=str(tmp_path / "parts" / "*.parquet"))).source
    assert {d.doc_id for d in read_source(glob)[0]} == {"a", "b", "c"}


def test_parquet_bad_rows_are_quarantined_with_their_reason(tmp_path):
    table = pa.table(
        {
            "key": ["ok", None, "nulltext", "emptytext", "ok", "binary", ""],
            "body": ["Fine text here.", "orphan", None, "", "Second copy.", None, "no id"],
            "raw": pa.array([None, None, None, None, None, b"\xff\xfe bad", None], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "books.parquet")
    source = Cell(tmp_path, _parquet(tmp_path, text_columns=["body", "raw"])).source
    docs, _ = read_source(source)
    assert [d.doc_id for d in docs] == ["ok"]
    small = DocumentsConfig(max_document_bytes=10)  # "Fine text here." is 15 bytes
    assert read_source(source, small)[1][0] == Rejected("ok", "too large: 15 bytes > limit 10")
    assert _reasons(source) == {
        "row-2": "missing id: column 'key' is NULL or empty",
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
        "row-7": "missing id: column 'key' is NULL or empty",
    }


def test_parquet_missing_file_or_column_is_a_source_error(tmp_path):
    path = tmp_path / "books.parquet"
    missing = Cell(tmp_path, _parquet(tmp_path)).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    assert str(error.value) == (
        f"sources[books].path: {path} does not exist; fix the path or create it"
    )
    _write_parquet(path, ROWS)
    wrong = Cell(tmp_path, _parquet(tmp_path, id_column="x")).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        f"sources[books].id_column: column 'x' is not in {path} (columns: key, title, body, lang)"
    )
    wrong = Cell(tmp_path, _parquet(tmp_path, metadata_columns=["lang", "year"])).source
    with pytest.raises(SourceError, match=r"^sources\[books\].metadata_columns: column 'year'"):
        read_source(wrong)


def test_parquet_signature_moves_only_with_the_files(tmp_path):
    path = tmp_path / "books.parquet"
    _write_parquet(path, ROWS)
    source = Cell(tmp_path, _parquet(tmp_path)).source
    first = source.signature()
    assert first is not None and source.signature() == first
    assert listing_signature(source) == first  # what the refresh sensor compares
    _write_parquet(path, EDITED)
    assert source.signature() != first


# --- postgres: a real server, started once for this module -----------------------------------


def _pg_bin(name: str) -> str:
    """initdb/pg_ctl on PATH, else Debian's /usr/lib/postgresql/*/bin (`apt-get install
    postgresql`: make system-deps)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    assert found, f"{name} is missing: install Debian's postgresql (make system-deps does)"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (socket in its folder). PostgreSQL refuses
    to run as root: as root, it runs as the `postgres` user Debian's package creates."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.port = _free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres password=s3cret"
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.dir / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
            "-c full_page_writes=off"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def execute(self, query: str, params=None) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query, params)


@pytest.fixture(scope="module")
def pg():
    server = PgServer()
    server.start()
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def pg_table(pg, monkeypatch, request):
    """A fresh table per test (named after it), and the DSN in the default variable."""
    table = "t_" + request.node.name.removeprefix("test_")[:40]
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(
        f"CREATE TABLE {table} (key text, body text, raw bytea, lang text, "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", pg.dsn)
    return table


def _pg_write(pg, table: str, rows: dict[str, str]) -> None:
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


def _postgres(table: str, **settings) -> dict:
    return {
        "name": "crm",
        "kind": "postgres",
        "table": f"public.{table}",
        "id_column": "key",
        "text_columns": ["body"],
        "updated_at_column": "updated_at",
        **settings,
    }


def test_postgres_edit_delete_insert_embeds_exactly_the_changes(tmp_path, pg, pg_table):
    cell = Cell(tmp_path, _postgres(pg_table, metadata_columns=["lang"]))
    _check_edit_cycle(cell, lambda rows: _pg_write(pg, pg_table, rows))


def test_postgres_bad_rows_are_quarantined_with_their_reason(tmp_path, pg, pg_table):
    pg.execute(
        f"INSERT INTO {pg_table} (key, body, raw) VALUES ('ok', 'Fine text.', NULL), "
        "(NULL, 'orphan', NULL), ('nulltext', NULL, NULL), ('emptytext', '', NULL), "
        "('ok', 'Second copy.', NULL), ('binary', NULL, '\\xfffe20626164')"
    )
    source = Cell(tmp_path, _postgres(pg_table, text_columns=["body", "raw"])).source
    assert [d.doc_id for d in read_source(source)[0]] == ["ok"]
    assert _reasons(source) == {
        "row-6": "missing id: column 'key' is NULL or empty",  # NULLs sort last
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
    }


def test_postgres_wrong_column_missing_table_unreachable_server(
    tmp_path, pg, pg_table, monkeypatch
):
    wrong = Cell(tmp_path, _postgres(pg_table, id_column="x")).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        f"sources[crm].id_column: column 'x' is not in table "
        f"'public.{pg_table}' (columns: key, body, raw, lang, updated_at)"
    )
    missing = Cell(tmp_path, _postgres("nowhere")).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    shown = redacted(pg.dsn)
    assert "s3cret" not in shown and "password=***" in shown and f"port={pg.port}" in shown
    assert str(error.value) == (
        f"sources[crm].table: table 'public.nowhere' does not exist "
        f'({shown}): relation "public.nowhere" does not exist'
    )
    down = f"host=127.0.0.1 port={_free_port()} dbname=postgres user=postgres password=s3cret"
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", down)
    source = Cell(tmp_path, _postgres(pg_table)).source
    with pytest.raises(SourceError) as error:
        read_source(source)
    port = down.split()[1].removeprefix("port=")
    assert str(error.value) == (
        f"sources[crm].dsn_env: cannot connect to the server in $EMBEDDINGS_PG_DSN "
        f'({redacted(down)}): connection failed: connection to server at "127.0.0.1", '
        f"port {port} failed: Connection refused"
    )
    assert "s3cret" not in str(error.value)
    monkeypatch.delenv("EMBEDDINGS_PG_DSN")
    with pytest.raises(SourceError) as error:
        read_source(source)
    assert str(error.value) == (
        "sources[crm].dsn_env: the environment variable "
        "EMBEDDINGS_PG_DSN is not set; export the server's connection "
        "string in it"
    )


def test_postgres_signature_is_the_watermark_and_the_count(tmp_path, pg, pg_table):
    _pg_write(pg, pg_table, ROWS)
    source = Cell(tmp_path, _postgres(pg_table)).source
    first = source.signature()
    assert first is not None and first.endswith("|4") and source.signature() == first
    assert listing_signature(source) == first
    _pg_write(pg, pg_table, {**ROWS, "b": "Dogs guard the house."})
    edited = source.signature()
    assert edited != first and edited.endswith("|4")
    _pg_write(pg, pg_table, {k: v for k, v in ROWS.items() if k != "c"})
    assert source.signature().endswith("|3")
    assert Cell(tmp_path, _postgres(pg_table, updated_at_column=None)).source.signature() is None


def test_postgres_refresh_while_the_server_restarts_loses_nothing(tmp_path, pg, pg_table):
    cell = Cell(tmp_path, _postgres(pg_table))
    _pg_write(pg, pg_table, ROWS)
    assert cell.refresh() == set(ROWS)
    _pg_write(pg, pg_table, EDITED)
    pg.stop()
    try:
        with pytest.raises(SourceError, match=r"^sources\[crm\]\.dsn_env: cannot connect"):
            cell.refresh()
        assert {r["doc_id"] for r in cell.vectors()} == set(ROWS)  # nothing unserved
    finally:
        pg.start()
    assert cell.refresh() == {"b", "e"}
    assert {r["doc_id"] for r in cell.vectors()} == set(EDITED)
    assert "c" not in cell.found("owls glide silently over fields")


def test_postgres_server_stopped_in_the_middle_of_a_read_loses_nothing(
    tmp_path, pg, pg_table, monkeypatch
):
    """The server goes away after the first batch: the read raises instead of returning the
    rows it got (which would unserve the others), and the next refresh embeds only changes."""
    from embeddings_platform.core.sources import postgres
    from embeddings_platform.core.sources import rows as row_module

    cell = Cell(tmp_path, _postgres(pg_table))
    _pg_write(pg, pg_table, ROWS)
    assert cell.refresh() == set(ROWS)
    _pg_write(pg, pg_table, EDITED)
    monkeypatch.setattr(postgres, "BATCH_ROWS", 2)
    read = []

    def stop_after_first_batch(*args, **kwargs):
        read.append(args[2])
        if len(read) == 2:
            pg.stop()
        return row_module.row_document(*args, **kwargs)

    monkeypatch.setattr(postgres, "row_document", stop_after_first_batch)
    try:
        with pytest.raises(
            SourceError,
            match=r"^sources\[crm\]\.dsn_env: lost the server in "
            r"\$EMBEDDINGS_PG_DSN while reading 'public\.t_",
        ):
            cell.refresh()
    finally:
        pg.start()
    assert read == ["row-1", "row-2"]
    assert {r["doc_id"] for r in cell.vectors()} == set(ROWS)  # nothing unserved
    monkeypatch.undo()
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", pg.dsn)
    assert cell.refresh() == {"b", "e"}
    assert {r["doc_id"] for r in cell.vectors()} == set(EDITED)


# --- iceberg: pyiceberg's SQL catalog on SQLite, a local warehouse ------------------------------

ICEBERG_SCHEMA = pa.schema(
    [("key", pa.string()), ("body", pa.string()), ("raw", pa.binary()), ("lang", pa.string())]
)


def _catalog(tmp_path) -> dict:
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"file://{tmp_path}/warehouse",
    }


def _iceberg_table(tmp_path):
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("lake", **_catalog(tmp_path))
    catalog.create_namespace("docs")
    return catalog.create_table("docs.notes", schema=ICEBERG_SCHEMA)


def _iceberg_rows(rows: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "key": list(rows),
            "body": list(rows.values()),
            "raw": pa.array([None] * len(rows), pa.binary()),
            "lang": ["en"] * len(rows),
        },
        schema=ICEBERG_SCHEMA,
    )


def _iceberg(tmp_path, **settings) -> dict:
    return {
        "name": "lake",
        "kind": "iceberg",
        "catalog": _catalog(tmp_path),
        "catalog_name": "lake",
        "table": "docs.notes",
        "id_column": "key",
        "text_columns": ["body"],
        **settings,
    }


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records")
def test_iceberg_edit_delete_insert_embeds_exactly_the_changes(tmp_path):
    table = _iceberg_table(tmp_path)
    cell = Cell(tmp_path, _iceberg(tmp_path, metadata_columns=["lang"]))
    _check_edit_cycle(cell, lambda rows: table.overwrite(_iceberg_rows(rows)))


def test_iceberg_vectors_name_the_snapshot_they_came_from(tmp_path):
    table = _iceberg_table(tmp_path)
    cell = Cell(tmp_path, _iceberg(tmp_path))
    table.append(_iceberg_rows(ROWS))
    first = table.current_snapshot().snapshot_id
    assert cell.refresh() == set(ROWS)
    assert {r["metadata_json"] for r in cell.vectors()} == {f'{{"iceberg_snapshot_id": {first}}}'}
    table.overwrite(_iceberg_rows(EDITED))
    second = table.refresh().current_snapshot().snapshot_id
    assert second != first
    assert cell.refresh() == {"b", "e"}
    written = {r["doc_id"]: r["metadata_json"] for r in cell.vectors()}
    assert set(written) == set(EDITED)  # unchanged a, d: the new id as a metadata update
    assert set(written.values()) == {f'{{"iceberg_snapshot_id": {second}}}'}


def test_iceberg_bad_rows_are_quarantined_with_their_reason(tmp_path):
    table = _iceberg_table(tmp_path)
    table.append(
        pa.table(
            {
                "key": ["ok", None, "nulltext", "emptytext", "ok", "binary"],
                "body": ["Fine text here.", "orphan", None, "", "Second copy.", None],
                "raw": pa.array([None, None, None, None, None, b"\xff\xfe bad"], pa.binary()),
                "lang": ["en"] * 6,
            },
            schema=ICEBERG_SCHEMA,
        )
    )
    source = Cell(tmp_path, _iceberg(tmp_path, text_columns=["body", "raw"])).source
    assert [d.doc_id for d in read_source(source)[0]] == ["ok"]
    assert _reasons(source) == {
        "row-2": "missing id: column 'key' is NULL or empty",
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
    }


def test_iceberg_missing_table_or_column_is_a_source_error(tmp_path):
    missing = Cell(tmp_path, _iceberg(tmp_path)).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    assert str(error.value) == (
        "sources[lake].table: table 'docs.notes' does not exist in the catalog"
    )
    _iceberg_table(tmp_path)
    wrong = Cell(tmp_path, _iceberg(tmp_path, text_columns=["text"])).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        "sources[lake].text_columns: column 'text' is not in table "
        "'docs.notes' (columns: key, body, raw, lang)"
    )
    assert read_source(Cell(tmp_path, _iceberg(tmp_path)).source) == ([], [])  # empty: valid


def test_iceberg_signature_is_the_current_snapshot_id(tmp_path):
    table = _iceberg_table(tmp_path)
    source = Cell(tmp_path, _iceberg(tmp_path)).source
    assert source.signature() == "empty"
    table.append(_iceberg_rows(ROWS))
    first = source.signature()
    assert first == str(table.current_snapshot().snapshot_id) and source.signature() == first
    assert listing_signature(source) == first
    table.overwrite(_iceberg_rows(EDITED))
    assert source.signature() == str(table.refresh().current_snapshot().snapshot_id) != first


def test_a_password_in_the_registry_is_an_unknown_key(tmp_path):
    from embeddings_platform.core.config import ConfigError

    with pytest.raises(ConfigError) as error:
        Cell(tmp_path, _postgres("notes", password="s3cret"))
    assert str(error.value) == (
        "sources[0]: unknown key 'password'; use name, kind, canary, shards, serve_model, table, "
        "dsn_env, id_column, text_columns, metadata_columns, updated_at_column"
    )
