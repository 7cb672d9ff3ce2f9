"""Filters for `Store.read` and search, built from values with `lancedb.expr`, never by
formatting strings: a document id or a source name with a quote in it is data, not SQL. The
full-text match is here for the same reason: its words are terms, never query syntax."""

from __future__ import annotations

from typing import Any

from lancedb.expr import col, lit
from lancedb.query import MatchQuery


def equal(**values: Any):
    """A filter: every named column equals its value (values are data, never SQL text)."""
    clauses = [col(name) == lit(value) for name, value in values.items()]
    expr = clauses[0]
    for clause in clauses[1:]:
        expr = expr & clause
    return expr


def after(column: str, moment):
    """A filter: the column's value is later than `moment`."""
    return col(column) > lit(moment)


def text_query(text: str, column: str = "text"):
    """A full-text query whose words are data: tokenised as terms, never parsed as query syntax
    (a quoted phrase would otherwise need a positional index, and fail without one)."""
    return MatchQuery(text, column)


def either(*filters):
    """A filter: any of the given filters holds."""
    expr = filters[0]
    for other in filters[1:]:
        expr = expr | other
    return expr
