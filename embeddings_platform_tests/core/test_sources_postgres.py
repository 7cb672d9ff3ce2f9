"""The postgres source kind against a real server (started on 127.0.0.1 by the `pg` fixture):
a refresh embeds exactly the changes, a snapshot reads only the rows past the watermark and finds
deletions by key, bad rows are quarantined, a server that goes away loses nothing."""

from __future__ import annotations

import psycopg
import pytest

from embeddings_platform.core import manifests
from embeddings_platform.core.config import ConfigError
from embeddings_platform.core.documents import read_source
from embeddings_platform.core.refresh import listing_signature, source_fingerprint
from embeddings_platform.core.registry import SourceError
from embeddings_platform.core.sources import postgres
from embeddings_platform.core.sources import rows as row_module
from embeddings_platform.core.sources.postgres import redacted
from embeddings_platform.testing import free_port

from .sources_shared import (
    EDITED,
    ROWS,
    Cell,
    check_edit_cycle,
    pg_write,
    postgres_source,
    reasons,
)


def test_postgres_edit_delete_insert_embeds_exactly_the_changes(tmp_path, pg, pg_table):
    cell = Cell(tmp_path, postgres_source(pg_table, metadata_columns=["lang"]))
    check_edit_cycle(cell, lambda rows: pg_write(pg, pg_table, rows))


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The rows the kind fetched and made documents of (by their name in rejections)."""
    rows: list[str] = []

    def counting(source, row, ref, *args, **kwargs):
        rows.append(row[source.id_column] or ref)
        return row_module.row_document(source, row, ref, *args, **kwargs)

    monkeypatch.setattr(postgres, "row_document", counting)
    return rows


@pytest.fixture
def listed(monkeypatch) -> list[int]:
    """How many times the kind listed every key of the table (the slow path)."""
    calls: list[int] = []
    real = postgres.PostgresSource._keys

    def counting(self, conn):
        keys = real(self, conn)
        calls.append(len(keys))
        return keys

    monkeypatch.setattr(postgres.PostgresSource, "_keys", counting)
    return calls


def test_a_snapshot_reads_rows_past_the_watermark_and_finds_deletions_by_key(
    tmp_path, pg, pg_table, fetched, listed
):
    many = {f"k{n:03d}": f"Note number {n} about gardens." for n in range(50)}
    pg_write(pg, pg_table, many)
    pg.execute(f"INSERT INTO {pg_table} (key, body) VALUES (NULL, 'no key')")
    cell = Cell(tmp_path, postgres_source(pg_table))
    first = cell.snapshot()
    assert (first.documents, first.documents_read, first.full_read) == (50, 51, True)

    fetched.clear()
    assert cell.snapshot().documents_read == 1  # only the row without a key: read every time
    assert fetched == ["row-without-id-1"] and listed == []  # the other keys add up

    fetched.clear()
    pg_write(pg, pg_table, {**many, "k010": "Edited in place.", "k099": "Inserted."})
    edit = cell.snapshot()
    assert sorted(fetched) == ["k010", "k099", "row-without-id-1"] and listed == []
    assert (edit.added, edit.changed, edit.removed) == (1, 1, 0)

    fetched.clear()
    pg_write(pg, pg_table, {**{k: v for k, v in many.items() if k != "k007"}, "k003": "Edited."})
    pg.execute(  # a row inserted with an old watermark value is found by its new key
        f"INSERT INTO {pg_table} (key, body, updated_at) VALUES ('old', 'Backdated.', '2001-01-01')"
    )
    edit = cell.snapshot()
    assert sorted(fetched) == ["k003", "k010", "old", "row-without-id-1"]  # k010: written back
    assert listed == [50]  # a deleted key, a backdated insert: the keys are listed
    assert (edit.added, edit.changed, edit.removed, edit.documents) == (1, 2, 2, 50)
    assert [q.doc_id for q in edit.quarantined] == ["row-without-id-1"]  # once, same name
    assert edit.snapshot_id == source_fingerprint(cell.source, cell.config.documents)
    assert cell.snapshot(full=True).snapshot_id == edit.snapshot_id


@pytest.fixture
def looked_up(monkeypatch) -> list[int]:
    """How many keys the kind looked up in the last snapshot's manifest."""
    calls: list[int] = []
    real = manifests.Previous.known

    def counting(self, keys):
        calls.append(len(keys))
        return real(self, keys)

    monkeypatch.setattr(manifests.Previous, "known", counting)
    return calls


def test_rows_edited_in_place_are_read_and_nothing_else_is_looked_up(
    tmp_path, pg, pg_table, fetched, listed, looked_up
):
    many = {f"k{n:03d}": f"Note number {n} about gardens." for n in range(50)}
    pg_write(pg, pg_table, many)
    cell = Cell(tmp_path, postgres_source(pg_table))
    cell.snapshot()
    fetched.clear()
    pg_write(pg, pg_table, {**many, "k010": "Edited in place.", "k020": "Edited too."})
    edit = cell.snapshot()
    assert sorted(fetched) == ["k010", "k020", "k049"]  # k049: at the last watermark
    assert listed == [] and looked_up == []  # every key as recorded: one aggregate said so
    assert edit.changed == 2 and edit.snapshot_id == source_fingerprint(cell.source)

    fetched.clear()
    pg_write(pg, pg_table, {**many, "k010": "Edited in place.", "k020": "Edited too.", "n": "New."})
    insert = cell.snapshot()
    assert sorted(fetched) == ["k020", "n"] and listed == []
    assert looked_up == [2]  # the keys read, looked up: one is new
    assert insert.added == 1 and insert.snapshot_id == source_fingerprint(cell.source)


def test_the_signature_keeps_one_connection_and_replaces_one_the_server_dropped(
    tmp_path, pg, pg_table, monkeypatch
):
    postgres.close_connections()
    pg_write(pg, pg_table, ROWS)
    source = Cell(tmp_path, postgres_source(pg_table)).source
    opened = []
    real = psycopg.connect
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: opened.append(1) or real(*a, **k))
    first = source.signature()
    assert source.signature() == first and source.signature() == first and len(opened) == 1

    (kept,) = postgres._kept.values()
    pg.execute("SELECT pg_terminate_backend(%s)", (kept.info.backend_pid,))
    opened.clear()
    assert source.signature() == first and len(opened) == 1  # replaced once, same answer
    pg.stop()
    try:
        with pytest.raises(SourceError) as error:
            source.signature()
    finally:
        pg.start()
    assert str(error.value).startswith("sources[crm].dsn_env: cannot connect to the server")
    assert "s3cret" not in str(error.value) and "password=***" in str(error.value)
    assert source.signature() == first
    postgres.close_connections()


def test_a_snapshot_reads_in_the_kept_connection_or_a_new_one_when_it_died(
    tmp_path, pg, pg_table, monkeypatch
):
    postgres.close_connections()
    pg_write(pg, pg_table, ROWS)
    cell = Cell(tmp_path, postgres_source(pg_table))
    cell.snapshot()
    opened = []
    real_connect, real_check = psycopg.connect, postgres.PostgresSource.check
    admin = psycopg.connect(pg.dsn, autocommit=True)
    monkeypatch.setattr(
        psycopg, "connect", lambda *a, **k: opened.append(1) or real_connect(*a, **k)
    )
    pg_write(pg, pg_table, {**ROWS, "a": "Cats sleep all day."})
    opened.clear()  # the test's own writes
    edit = cell.snapshot()
    assert edit.changed == 1 and not edit.full_read and opened == []  # check's, then the read's

    def check_then_lose_the_connection(source):
        real_check(source)
        (kept,) = postgres._kept.values()
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (kept.info.backend_pid,))

    monkeypatch.setattr(postgres.PostgresSource, "check", check_then_lose_the_connection)
    pg_write(pg, pg_table, {**ROWS, "a": "Cats sleep all night."})
    opened.clear()
    again = cell.snapshot()
    assert again.changed == 1 and not again.full_read and opened == [1]
    assert again.snapshot_id == source_fingerprint(cell.source)
    admin.close()
    postgres.close_connections()


def test_an_edit_that_keeps_the_watermark_is_found_by_a_full_read(tmp_path, pg, pg_table):
    """Writers must move updated_at; one that does not is seen by the next full read (the
    freshness re-check reads in full)."""
    pg_write(pg, pg_table, ROWS)
    cell = Cell(tmp_path, postgres_source(pg_table))
    cell.snapshot()
    pg.execute(f"UPDATE {pg_table} SET body = 'Quietly changed.' WHERE key = 'a'")
    assert not cell.snapshot().is_new
    full = cell.snapshot(full=True)
    assert (full.is_new, full.changed, full.documents_read) == (True, 1, 4)


def test_postgres_bad_rows_are_quarantined_with_their_reason(tmp_path, pg, pg_table):
    pg.execute(
        f"INSERT INTO {pg_table} (key, body, raw) VALUES ('ok', 'Fine text.', NULL), "
        "(NULL, 'orphan', NULL), ('nulltext', NULL, NULL), ('emptytext', '', NULL), "
        "('ok', 'Second copy.', NULL), ('binary', NULL, '\\xfffe20626164')"
    )
    source = Cell(tmp_path, postgres_source(pg_table, text_columns=["body", "raw"])).source
    assert [d.doc_id for d in read_source(source)[0]] == ["ok"]
    assert reasons(source) == {
        "row-without-id-1": "missing id: column 'key' is NULL or empty",
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
    }


def test_postgres_wrong_column_missing_table_unreachable_server(
    tmp_path, pg, pg_table, monkeypatch
):
    wrong = Cell(tmp_path, postgres_source(pg_table, id_column="x")).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        f"sources[crm].id_column: column 'x' is not in table "
        f"'public.{pg_table}' (columns: key, body, raw, lang, updated_at)"
    )
    missing = Cell(tmp_path, postgres_source("nowhere")).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    shown = redacted(pg.dsn)
    assert "s3cret" not in shown and "password=***" in shown and f"port={pg.port}" in shown
    assert str(error.value) == (
        f"sources[crm].table: table 'public.nowhere' does not exist "
        f'({shown}): relation "public.nowhere" does not exist'
    )
    down = f"host=127.0.0.1 port={free_port()} dbname=postgres user=postgres password=s3cret"
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", down)
    source = Cell(tmp_path, postgres_source(pg_table)).source
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
    pg_write(pg, pg_table, ROWS)
    source = Cell(tmp_path, postgres_source(pg_table)).source
    first = source.signature()
    assert first is not None and first.endswith("|4") and source.signature() == first
    assert listing_signature(source) == first
    pg_write(pg, pg_table, {**ROWS, "b": "Dogs guard the house."})
    edited = source.signature()
    assert edited != first and edited.endswith("|4")
    pg_write(pg, pg_table, {k: v for k, v in ROWS.items() if k != "c"})
    assert source.signature().endswith("|3")
    no_watermark = Cell(tmp_path, postgres_source(pg_table, updated_at_column=None)).source
    assert no_watermark.signature() is None


def test_postgres_refresh_while_the_server_restarts_loses_nothing(tmp_path, pg, pg_table):
    cell = Cell(tmp_path, postgres_source(pg_table))
    pg_write(pg, pg_table, ROWS)
    assert cell.refresh() == set(ROWS)
    pg_write(pg, pg_table, EDITED)
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
    """The server goes away after the first batch of a partial read: the read raises instead
    of returning the rows it got (which would unserve the others), and the next refresh embeds
    only the changes."""
    many = {f"k{n:02d}": f"Note {n} about rivers and boats." for n in range(10)}
    cell = Cell(tmp_path, postgres_source(pg_table))
    pg_write(pg, pg_table, many)
    assert cell.refresh() == set(many)
    edited = {**{k: v for k, v in many.items() if k != "k05"}, "k01": "Edited one.", "k02": "Two."}
    edited["new"] = "A new note about lakes."
    pg_write(pg, pg_table, edited)
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
    assert len(read) == 2
    assert {r["doc_id"] for r in cell.vectors()} == set(many)  # nothing unserved
    monkeypatch.undo()
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", pg.dsn)
    assert cell.refresh() == {"k01", "k02", "new"}
    assert {r["doc_id"] for r in cell.vectors()} == set(edited)


def test_a_password_in_the_registry_is_an_unknown_key(tmp_path):
    with pytest.raises(ConfigError) as error:
        Cell(tmp_path, postgres_source("notes", password="s3cret"))
    assert str(error.value) == (
        "sources[0]: unknown key 'password'; use name, kind, canary, shards, serve_model, table, "
        "dsn_env, id_column, text_columns, metadata_columns, updated_at_column"
    )
