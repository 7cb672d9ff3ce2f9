"""`postgres`: the rows of a table or view in a PostgreSQL server, read with psycopg 3.

Doc ids are the id column's values. The connection string comes from an environment variable
the registry names (`dsn_env`), never from the registry itself, and is shown with its password
removed. Rows are read through a server-side cursor, a batch at a time, in id order;
identifiers are composed with `psycopg.sql.Identifier`, never formatted into SQL. A read cut
off half-way (the server restarted) raises: a partial read must not be taken for deletions.

With `updated_at_column`, a snapshot after the first reads only the rows at or past the last
watermark (and rows whose key is new or NULL), and finds deleted rows by comparing keys: one
REPEATABLE READ transaction, so the keys, the rows and the new watermark agree. Its first
statement reads the watermark and the count and hash sum of every key, one pass on the server:
when those are the last snapshot's, no key came or went and nothing else is looked up.

The sensor's signature (and `check`) runs on a connection kept per process (the sensor lives in
the long-lived code server): a tick is one statement, no connect; a kept connection the server
dropped is replaced once (tenacity), and errors name the server without its password.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic.dataclasses import dataclass as settings
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from ..registry import STRICT, SourceError, source_kind
from ..settings import DocumentsConfig
from .base import Changes, PreviousRead, RawDocument, SourceSettings, source_error
from .rows import BATCH_ROWS, check_columns, needed_columns, row_document, row_key

CONNECT_TIMEOUT_SECONDS = 5


_kept: dict[tuple[int, str], psycopg.Connection] = {}  # (process, dsn) -> the sensor's
_kept_lock = threading.Lock()


def _key_hash_sql(ident: sql.Composable) -> sql.Composable:
    """A key's 64-bit hash, computed on the server only (so any stable hash will do: one that
    changed with a server upgrade costs one listing of the keys, never a wrong snapshot)."""
    return sql.SQL("hashtextextended({}::text, 0)").format(ident)


def _answers(conn: psycopg.Connection) -> bool:
    """Does a kept connection still reach its server (not closed by it since the last use)?"""
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        conn.close()
        return False


def close_connections() -> None:
    """Close the connections kept for signatures (tests; a process done with its sources)."""
    with _kept_lock:
        for conn in _kept.values():
            conn.close()
        _kept.clear()


def redacted(dsn: str) -> str:
    """The connection string without its password (for errors and logs)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


@source_kind("postgres")
@settings(config=STRICT, kw_only=True)
class PostgresSource(SourceSettings):
    kind: Literal["postgres"] = "postgres"
    entry_is_doc_id = True
    table: str  # a table or view, optionally schema-qualified
    dsn_env: str = "EMBEDDINGS_PG_DSN"  # the environment variable holding the connection string
    id_column: str = "id"
    text_columns: tuple[str, ...] = ("text",)  # joined with a blank line, in this order
    metadata_columns: tuple[str, ...] = ()
    updated_at_column: str | None = None  # a watermark: with it, changes are seen without a read

    def _table(self) -> sql.Composable:
        return sql.Identifier(*self.table.split(".", 1))

    def _dsn(self) -> str:
        dsn = os.environ.get(self.dsn_env)
        if not dsn:
            raise source_error(
                self,
                "dsn_env",
                f"the environment variable {self.dsn_env} is not "
                "set; export the server's connection string in it",
            )
        return dsn

    def _failure(self, key: str, what: str, exc: Exception, dsn: str) -> SourceError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.Error:
            password = None
        if password:
            message = message.replace(str(password), "***")
        return source_error(self, key, f"{what} ({redacted(dsn)}): {message}")

    def _open(self, dsn: str, **options) -> psycopg.Connection:
        try:
            return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS, **options)
        except psycopg.Error as exc:
            raise self._failure(
                "dsn_env", f"cannot connect to the server in ${self.dsn_env}", exc, dsn
            ) from exc

    @contextmanager
    def _errors(self, dsn: str) -> Iterator[None]:
        """Errors of a statement as SourceErrors naming the setting, without the password."""
        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            raise self._failure("table", f"table {self.table!r} does not exist", exc, dsn) from exc
        except psycopg.OperationalError as exc:
            raise self._failure(
                "dsn_env",
                f"lost the server in ${self.dsn_env} while reading {self.table!r}",
                exc,
                dsn,
            ) from exc
        except psycopg.Error as exc:  # e.g. a column dropped between check and read
            raise self._failure("table", f"cannot read table {self.table!r}", exc, dsn) from exc

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        """A connection for one read transaction: the one this process keeps (`check`, run
        just before, opened it while the snapshot step loaded the last snapshot), borrowed so
        that a tick meanwhile opens its own, and given back after a read that ended well; a
        fresh one when none is kept or the kept one no longer answers."""
        dsn = self._dsn()
        key = (os.getpid(), dsn)
        with _kept_lock:
            conn = _kept.pop(key, None)
        if conn is not None and not _answers(conn):
            conn = None
        conn = conn or self._open(dsn, autocommit=True)
        conn.autocommit = False
        with self._errors(dsn):
            try:
                yield conn
                conn.rollback()  # read only: nothing to commit
            except BaseException:
                conn.close()
                raise
        conn.autocommit, conn.isolation_level, conn.read_only = True, None, None
        with _kept_lock:
            if _kept.get(key) is None:
                _kept[key] = conn
                conn = None
        if conn is not None:
            conn.close()

    def _on_kept(self, use: Callable[[psycopg.Connection], Any]) -> Any:
        """`use` on this process's kept connection (autocommit); one the server dropped (a
        restart, an idle timeout) is replaced once before the error is the source's."""
        dsn = self._dsn()
        key = (os.getpid(), dsn)  # a forked child opens its own
        retrying = Retrying(
            stop=stop_after_attempt(2),
            retry=retry_if_exception_type(psycopg.OperationalError),
            reraise=True,
        )
        with self._errors(dsn), _kept_lock:
            for attempt in retrying:
                with attempt:
                    conn = _kept.get(key)
                    if conn is None or conn.closed:
                        conn = _kept[key] = self._open(dsn, autocommit=True)
                    try:
                        return use(conn)
                    except psycopg.OperationalError:
                        _kept.pop(key, None)
                        conn.close()
                        raise

    def _columns(self, conn: psycopg.Connection) -> list[str]:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._table()))
            return [c.name for c in cur.description]

    def check(self) -> None:
        columns = self._on_kept(self._columns)
        check_columns(self, columns, f"table {self.table!r}")
        if self.updated_at_column and self.updated_at_column not in columns:
            raise source_error(
                self,
                "updated_at_column",
                f"column {self.updated_at_column!r} "
                f"is not in table {self.table!r} (columns: {', '.join(columns)})",
            )

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return self.changes(None, documents).documents

    def changes(self, previous: PreviousRead | None, documents: DocumentsConfig) -> Changes:
        """Every row, or (after a first read, with a watermark) the rows that may have changed.

        Rows are their own entries; rows without a usable id share the entry "" and are read
        every time. The changes are found while the documents are read (one transaction)."""
        watermark = (previous.state.get("watermark") if previous is not None else None) or None
        state: dict[str, Any] = {}
        if self.updated_at_column is None or watermark is None:
            return Changes(self._read_rows(state), None, state=state)
        touched: set[str] = {""}
        return Changes(self._read_rows(state, previous, touched), touched, state=state)

    def _keyed(self) -> sql.Composable:
        return sql.SQL("{id} IS NOT NULL AND {id}::text <> ''").format(
            id=sql.Identifier(self.id_column)
        )

    def _read_rows(
        self, state: dict, previous: PreviousRead | None = None, touched: set | None = None
    ) -> Iterator[RawDocument]:
        """All rows, or: the rows at or past the watermark, NULL or without a usable id; then,
        unless the keys add up to what the last snapshot recorded (all of them, or the others'
        with the ones read), the keys are listed: the ones gone join `touched`, the rows of new
        ones are read too."""
        read: set[str] = set()
        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if self.updated_at_column:  # first: the transaction's snapshot is taken here
                mark = sql.Identifier(self.updated_at_column)
                summary = sql.SQL(  # the keyed rows' condition once a row, not once a sum
                    "SELECT (SELECT max({mark}) FROM {table})::text, count(*), "
                    "coalesce(sum({hash}), 0) FROM {table} WHERE {keyed}"
                ).format(
                    mark=mark,
                    keyed=self._keyed(),
                    hash=_key_hash_sql(sql.Identifier(self.id_column)),
                    table=self._table(),
                )
                watermark, count, total = conn.execute(summary).fetchone()
                state.update(watermark=watermark, key_count=count, key_hash_sum=str(total))
            if previous is None or touched is None:
                yield from self._fetch(conn, sql.SQL(""), [], read)
                return
            # a cursor is planned for its first rows by default: for the rows past a watermark
            # that is a scan of the whole table in id order instead of the watermark's index
            conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            again = sql.SQL(
                "{mark} >= {wm} OR {mark} IS NULL OR {id} IS NULL OR {id}::text = ''"
            ).format(mark=mark, wm=sql.Placeholder(), id=sql.Identifier(self.id_column))
            watermark = previous.state["watermark"]
            yield from self._fetch(conn, sql.SQL(" WHERE ") + again, [watermark], read)
            recorded = previous.state
            if [recorded.get("key_count"), recorded.get("key_hash_sum")] == [
                state["key_count"],
                state["key_hash_sum"],
            ] or self._rest_as_recorded(conn, again, watermark, previous, read):
                touched.update(read)
                return
            now = self._keys(conn)
            before = previous.keys()
            touched.update(before.filter(pc.invert(pc.is_in(before, value_set=now))).to_pylist())
            new = now.filter(pc.invert(pc.is_in(now, value_set=before))).to_pylist()
            new = [k for k in new if k not in read]
            if new:
                where = sql.SQL(" WHERE {}::text = ANY({})").format(
                    sql.Identifier(self.id_column), sql.Placeholder()
                )
                yield from self._fetch(conn, where, [new], read)
            touched.update(read)

    def _fetch(self, conn, where: sql.Composable, params: list, read: set) -> Iterator[RawDocument]:
        """The documents of the rows matching `where`, in id order; their keys join `read`."""
        columns = needed_columns(self.id_column, self.text_columns, self.metadata_columns)
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            self._table(),
            where,
            sql.Identifier(self.id_column),
        )
        with conn.cursor(name="embeddings_platform_read") as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(query, params or None)
            unkeyed = 0  # rows without a usable id are named by their order among those
            while batch := cur.fetchmany(BATCH_ROWS):
                for values in batch:
                    row = dict(zip(columns, values))
                    if row_key(row[self.id_column], self.id_column) is None:
                        unkeyed += 1
                    doc = row_document(self, row, f"row-without-id-{unkeyed}")
                    if doc.entry:
                        read.add(doc.entry)
                    yield doc

    def _rest_as_recorded(self, conn, again, watermark, previous, read) -> bool:
        """Keys came or went. Do the keys of the rows not read again add up (count and hash
        sum) to the last snapshot's without the ones read? Then the ones read are the only new
        ones (inserted past the watermark) and none was deleted: no listing of the keys."""
        recorded = previous.state
        if "key_count" not in recorded:
            return False
        known = sorted(previous.known(read))  # the keys read again that the last snapshot had
        ident = sql.Identifier(self.id_column)
        query = sql.SQL(
            "SELECT count(*), coalesce(sum({hash}), 0), "
            "(SELECT coalesce(sum({known}), 0) FROM unnest({keys}::text[]) AS k) "
            "FROM {table} WHERE {keyed} AND NOT ({again})"
        ).format(
            hash=_key_hash_sql(ident),
            known=_key_hash_sql(sql.Identifier("k")),
            keys=sql.Placeholder(),
            table=self._table(),
            keyed=self._keyed(),
            again=again,
        )
        count, total, known_total = conn.execute(query, [known, watermark]).fetchone()
        expected = int(recorded["key_count"]) - len(known)
        return (count, total) == (expected, int(recorded["key_hash_sum"]) - known_total)

    def _keys(self, conn: psycopg.Connection) -> pa.Array:
        """Every key, as text (a doc id is its id's text)."""
        ident = sql.Identifier(self.id_column)
        query = sql.SQL("SELECT {}::text FROM {} WHERE {} IS NOT NULL AND {}::text <> ''").format(
            ident, self._table(), ident, ident
        )
        with conn.cursor(binary=True) as cur:
            return pa.array([key for (key,) in cur.execute(query).fetchall()], pa.string())

    def signature(self) -> str | None:
        """`max(updated_at_column)` and `count(*)`: an edit moves the first (when writers keep
        the column current), a delete or insert moves the count. None without a watermark."""
        if self.updated_at_column is None:
            return None
        query = sql.SQL("SELECT (SELECT max({}) FROM {t}), (SELECT count(*) FROM {t})").format(
            sql.Identifier(self.updated_at_column), t=self._table()
        )
        latest, count = self._on_kept(lambda conn: conn.execute(query).fetchone())
        return f"{latest.isoformat() if hasattr(latest, 'isoformat') else latest}|{count}"
