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

import os
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, SourceError, source_kind
from ..settings import DocumentsConfig
from .base import Changes, PreviousRead, RawDocument, SourceSettings, source_error
from .rows import BATCH_ROWS, check_columns, needed_columns, row_document, row_key

CONNECT_TIMEOUT_SECONDS = 5


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
        every time. The changes are found when the documents are iterated (one transaction)."""
        watermark = (previous.state.get("watermark") if previous is not None else None) or None
        if self.updated_at_column is None or watermark is None:
            state: dict[str, Any] = {}
            return Changes(self._read_rows(state), None, state=state)
        touched: set[str] = {""}
        state = {}
        return Changes(self._read_rows(state, previous, touched), touched, state=state)

    def _read_rows(
        self, state: dict, previous: PreviousRead | None = None, touched: set | None = None
    ) -> Iterator[RawDocument]:
        columns = needed_columns(self.id_column, self.text_columns, self.metadata_columns)
        ident, table = sql.Identifier(self.id_column), self._table()
        where, params = sql.SQL(""), []
        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if self.updated_at_column:
                mark = sql.Identifier(self.updated_at_column)
                latest = conn.execute(sql.SQL("SELECT max({})::text FROM {}").format(mark, table))
                state["watermark"] = latest.fetchone()[0]
            if previous is not None and touched is not None:
                new = self._key_changes(conn, previous, touched)
                where = sql.SQL(
                    " WHERE {mark} >= {wm} OR {mark} IS NULL OR {id} IS NULL"
                    " OR {id}::text = '' OR {id} = ANY({new})"
                ).format(mark=mark, wm=sql.Placeholder(), id=ident, new=sql.Placeholder())
                params = [previous.state["watermark"], new]
            query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), table, where, ident
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
                        if touched is not None:
                            touched.add(doc.entry)
                        yield doc

    def _key_changes(self, conn: psycopg.Connection, previous: PreviousRead, touched: set) -> list:
        """Keys gone since the last snapshot join `touched`; the id values of new keys are
        returned (a row inserted with an old watermark value is read all the same)."""
        query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(self.id_column), self._table())
        now: dict[str, Any] = {}
        for (value,) in conn.execute(query):
            key = row_key(value, self.id_column)
            if key is not None:
                now[key] = value
        before = previous.keys()
        touched.update(k for k in before if k not in now)
        return [value for key, value in now.items() if key not in before]

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
