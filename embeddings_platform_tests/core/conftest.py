"""Fixtures of the folder kind's tests: which files are opened, which folders walked."""

from __future__ import annotations

import os

import pytest

from embeddings_platform.core.sources import folder as folder_kind
from embeddings_platform.core.sources import watch


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The files the folder kind opens to read (not to stat)."""
    names: list[str] = []
    real = folder_kind.read_bounded

    def counting(path, limit):
        names.append(os.path.relpath(path, path.parents[1]))
        return real(path, limit)

    monkeypatch.setattr(folder_kind, "read_bounded", counting)
    return names


@pytest.fixture
def walks(monkeypatch) -> list[str]:
    """Every walk of a folder's listing, and watchers for folders of any size (stopped after)."""
    roots: list[str] = []
    real = folder_kind._listing

    def counting(root, include_hidden):
        roots.append(root)
        return real(root, include_hidden)

    monkeypatch.setattr(folder_kind, "_listing", counting)
    monkeypatch.setattr(watch, "WATCH_AFTER_SECONDS", 0.0)
    yield roots
    watch.stop_watching()
