"""The parquet source kind: a refresh embeds exactly the changes, bad rows are quarantined, an
unreadable source is a SourceError naming the setting, and a snapshot reads only the files
whose stamp moved."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embeddings_platform.core.config import DocumentsConfig
from embeddings_platform.core.documents import Rejected, read_source
from embeddings_platform.core.refresh import listing_signature, source_fingerprint
from embeddings_platform.core.registry import SourceError
from embeddings_platform.core.sources import parquet as parquet_kind

from .sources_shared import (
    EDITED,
    ROWS,
    Cell,
    check_edit_cycle,
    parquet_source,
    reasons,
    write_parquet,
)


def test_parquet_edit_delete_insert_embeds_exactly_the_changes(tmp_path):
    cell = Cell(tmp_path, parquet_source(tmp_path, metadata_columns=["lang"]))
    check_edit_cycle(cell, lambda rows: write_parquet(tmp_path / "books.parquet", rows))
    assert {r["doc_id"]: r["metadata_json"] for r in cell.vectors()}["a"] == '{"lang": "en"}'


def test_parquet_folder_reads_every_file_in_batches(tmp_path):
    (tmp_path / "parts").mkdir()
    write_parquet(tmp_path / "parts" / "1.parquet", {"a": ROWS["a"], "b": ROWS["b"]})
    write_parquet(tmp_path / "parts" / "2.parquet", {"c": ROWS["c"]})
    source = Cell(
        tmp_path,
        parquet_source(tmp_path, path=str(tmp_path / "parts"), text_columns=["title", "body"]),
    ).source
    docs = {d.doc_id: d.text for d in read_source(source)[0]}
    assert docs == {"a": f"Ta\n\n{ROWS['a']}", "b": f"Tb\n\n{ROWS['b']}", "c": f"Tc\n\n{ROWS['c']}"}
    glob = Cell(
        tmp_path, parquet_source(tmp_path, path=str(tmp_path / "parts" / "*.parquet"))
    ).source
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
    source = Cell(tmp_path, parquet_source(tmp_path, text_columns=["body", "raw"])).source
    docs, _ = read_source(source)
    assert [d.doc_id for d in docs] == ["ok"]
    small = DocumentsConfig(max_document_bytes=10)  # "Fine text here." is 15 bytes
    assert read_source(source, small)[1][0] == Rejected("ok", "too large: 15 bytes > limit 10")
    assert reasons(source) == {
        "row-2": "missing id: column 'key' is NULL or empty",
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
        "row-7": "missing id: column 'key' is NULL or empty",
    }


def test_parquet_missing_file_or_column_is_a_source_error(tmp_path):
    path = tmp_path / "books.parquet"
    missing = Cell(tmp_path, parquet_source(tmp_path)).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    assert str(error.value) == (
        f"sources[books].path: {path} does not exist; fix the path or create it"
    )
    write_parquet(path, ROWS)
    wrong = Cell(tmp_path, parquet_source(tmp_path, id_column="x")).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        f"sources[books].id_column: column 'x' is not in {path} (columns: key, title, body, lang)"
    )
    wrong = Cell(tmp_path, parquet_source(tmp_path, metadata_columns=["lang", "year"])).source
    with pytest.raises(SourceError, match=r"^sources\[books\].metadata_columns: column 'year'"):
        read_source(wrong)


def test_parquet_signature_moves_only_with_the_files(tmp_path):
    path = tmp_path / "books.parquet"
    write_parquet(path, ROWS)
    source = Cell(tmp_path, parquet_source(tmp_path)).source
    first = source.signature()
    assert first is not None and source.signature() == first
    assert listing_signature(source) == first  # what the refresh sensor compares
    write_parquet(path, EDITED)
    assert source.signature() != first


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The Parquet files the source kind opens to read rows (footers for check() aside)."""
    files: list[str] = []
    real = parquet_kind.pq.ParquetFile

    def counting(path, *args, **kwargs):
        files.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(parquet_kind.pq, "ParquetFile", counting)
    return files


def test_a_snapshot_reads_only_the_files_whose_stamp_moved(tmp_path, opened):
    parts = tmp_path / "parts"
    parts.mkdir()
    for n in range(3):
        write_parquet(parts / f"{n}.parquet", {f"{n}-{k}": v for k, v in ROWS.items()})
    cell = Cell(tmp_path, parquet_source(tmp_path, path=str(parts)))
    first = cell.snapshot()
    assert (first.documents, first.documents_read, first.full_read) == (12, 12, True)
    assert sorted(opened) == ["0.parquet", "1.parquet", "2.parquet"]

    opened.clear()
    again = cell.snapshot()
    assert (again.is_new, again.documents_read, opened) == (False, 0, [])

    write_parquet(parts / "1.parquet", {f"1-{k}": v for k, v in EDITED.items()})
    edit = cell.snapshot()
    assert opened == ["1.parquet"] and edit.documents_read == 4 and not edit.full_read
    assert (edit.added, edit.changed, edit.removed, edit.documents) == (1, 1, 1, 12)

    opened.clear()
    (parts / "0.parquet").unlink()
    write_parquet(parts / "3.parquet", {"3-a": ROWS["a"]})
    moved = cell.snapshot()
    assert opened == ["3.parquet"] and moved.documents_read == 1
    assert (moved.added, moved.removed, moved.documents) == (1, 4, 9)
    # the partly read snapshot is the one a full read makes: same id, same documents
    assert moved.snapshot_id == source_fingerprint(cell.source, cell.config.documents)
    expected = {f"1-{k}" for k in EDITED} | {f"2-{k}" for k in ROWS} | {"3-a"}
    assert set(cell.manifest()) == expected
    assert cell.snapshot(full=True).snapshot_id == moved.snapshot_id
