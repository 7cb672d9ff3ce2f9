"""`postgres`: the rows of a table or view in a PostgreSQL server, read with psycopg 3.

Doc ids are the id column's values. The connection string comes from an environment variable
the registry names (`dsn_env`), never from the registry itself, and is shown with its password
removed. Rows are read through a server-side cursor, a batch at a time, in id order;
identifiers are composed with `psycopg.sql.Identifier`, never formatted into SQL. A read cut
off half-way (the server restarted) raises: a partial read must not be taken for deletions.

With `updated_at_column`, a snapshot after the first reads only the rows at or past the last
watermark (and rows whose key is new or NULL), and finds deleted rows by comparing keys: one
REPEATABLE READ transaction, so the keys, the rows and the new watermark agree.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, SourceError, source_kind
from ..settings import DocumentsConfig
from .base import Changes, PreviousRead, RawDocument, SourceSettings, source_error
from .rows import BATCH_ROWS, check_columns, needed_columns, row_document, row_key

CONNECT_TIMEOUT_SECONDS = 5


def key_hash(key: str) -> int:
    """The first 8 bytes of a key's SHA-256, signed: what _key_hash_sql computes on the server."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)


def _key_hash_sql(ident: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "('x' || encode(substring(sha256(convert_to({}::text, 'UTF8')) FROM 1 FOR 8), 'hex'))"
        "::bit(64)::bigint"
    ).format(ident)


def _key_state(keys) -> dict[str, Any]:
    keys = set(keys)
    return {"keys": len(keys), "keys_sum": str(sum(map(key_hash, keys)))}


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

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        dsn = self._dsn()
        try:
            conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            raise self._failure(
                "dsn_env", f"cannot connect to the server in ${self.dsn_env}", exc, dsn
            ) from exc
        try:
            with conn:
                yield conn
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

    def _columns(self, conn: psycopg.Connection) -> list[str]:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._table()))
            return [c.name for c in cur.description]

    def check(self) -> None:
        with self._connect() as conn:
            columns = self._columns(conn)
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

    def _read_rows(
        self, state: dict, previous: PreviousRead | None = None, touched: set | None = None
    ) -> Iterator[RawDocument]:
        """All rows, or: the rows at or past the watermark, NULL or without a usable id; then,
        unless the other rows' keys add up to what the last snapshot recorded, the keys are
        listed: the ones gone join `touched`, the rows of new ones are read too."""
        read: set[str] = set()
        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if self.updated_at_column:
                mark = sql.Identifier(self.updated_at_column)
                latest = conn.execute(
                    sql.SQL("SELECT max({})::text FROM {}").format(mark, self._table())
                )
                state["watermark"] = latest.fetchone()[0]
            if previous is None or touched is None:
                yield from self._fetch(conn, sql.SQL(""), [], read)
                state.update(_key_state(read))
                return
            again = sql.SQL(
                "{mark} >= {wm} OR {mark} IS NULL OR {id} IS NULL OR {id}::text = ''"
            ).format(mark=mark, wm=sql.Placeholder(), id=sql.Identifier(self.id_column))
            watermark = previous.state["watermark"]
            yield from self._fetch(conn, sql.SQL(" WHERE ") + again, [watermark], read)
            if self._rest_as_recorded(conn, again, watermark, previous, read, state):
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
            state.update(_key_state(now.to_pylist()))

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

    def _rest_as_recorded(self, conn, again, watermark, previous, read, state) -> bool:
        """Do the keys of the rows not read again add up (count and sum of key hashes, one
        aggregate on the server) to the last snapshot's keys without the ones read? Then no
        row was deleted and none inserted under an old watermark: the keys need no listing."""
        recorded = previous.state
        if "keys" not in recorded:
            return False
        known = previous.known(read)  # the keys read again that the last snapshot had
        count = int(recorded["keys"]) - len(known)
        total = int(recorded["keys_sum"]) - sum(map(key_hash, known))
        ident = sql.Identifier(self.id_column)
        query = sql.SQL(
            "SELECT count(*), coalesce(sum({hash}), 0) FROM {table} "
            "WHERE {id} IS NOT NULL AND NOT ({again})"
        ).format(hash=_key_hash_sql(ident), table=self._table(), id=ident, again=again)
        if tuple(conn.execute(query, [watermark]).fetchone()) != (count, total):
            return False
        state.update(keys=count + len(read), keys_sum=str(total + sum(map(key_hash, read))))
        return True

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
        query = sql.SQL("SELECT max({}), count(*) FROM {}").format(
            sql.Identifier(self.updated_at_column), self._table()
        )
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(query)
            latest, count = cur.fetchone()
        return f"{latest.isoformat() if hasattr(latest, 'isoformat') else latest}|{count}"
