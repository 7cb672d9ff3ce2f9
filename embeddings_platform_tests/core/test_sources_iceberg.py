"""The iceberg source kind on pyiceberg's SQL catalog (SQLite, a local warehouse): a refresh
embeds exactly the changes, a snapshot reads only the data files the table's metadata shows
added or given deletes, and every vector's lineage names the table snapshot its text was read at."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo
from pyiceberg.io import pyarrow as iceberg_arrow

from embeddings_platform.core.documents import read_source
from embeddings_platform.core.refresh import listing_signature, source_fingerprint
from embeddings_platform.core.registry import SourceError
from embeddings_platform.core.serving import lineage

from .sources_shared import (
    EDITED,
    ICEBERG_SCHEMA,
    ROWS,
    Cell,
    check_edit_cycle,
    iceberg_rows,
    iceberg_source,
    iceberg_table,
    reasons,
)


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records")
def test_iceberg_edit_delete_insert_embeds_exactly_the_changes(tmp_path):
    table = iceberg_table(tmp_path)
    cell = Cell(tmp_path, iceberg_source(tmp_path, metadata_columns=["lang"]))
    check_edit_cycle(cell, lambda rows: table.overwrite(iceberg_rows(rows)))


@pytest.fixture
def files_read(monkeypatch) -> list[str]:
    """The data files whose rows the kind reads."""
    read: list[str] = []
    real = iceberg_arrow.ArrowScan.to_record_batches

    def counting(self, tasks, *args, **kwargs):
        tasks = list(tasks)
        read.extend(t.file.file_path for t in tasks)
        return real(self, tasks, *args, **kwargs)

    monkeypatch.setattr(iceberg_arrow.ArrowScan, "to_record_batches", counting)
    return read


def _one_file_per_row(table, rows: dict[str, str]) -> None:
    for key, body in rows.items():
        table.append(iceberg_rows({key: body}))


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records")
def test_a_snapshot_reads_only_the_data_files_that_changed(tmp_path, files_read):
    table = iceberg_table(tmp_path)
    _one_file_per_row(table, ROWS)
    cell = Cell(tmp_path, iceberg_source(tmp_path))
    first = cell.snapshot()
    assert (first.documents_read, len(files_read)) == (4, 4)

    files_read.clear()
    assert cell.snapshot().documents_read == 0 and files_read == []  # same snapshot id

    files_read.clear()
    table.delete(EqualTo("key", "c"))  # drops c's data file: nothing to read
    table.overwrite(iceberg_rows({"b": EDITED["b"]}), overwrite_filter=EqualTo("key", "b"))
    table.append(iceberg_rows({"e": EDITED["e"]}))
    edit = cell.snapshot()
    assert (edit.added, edit.changed, edit.removed, edit.documents_read) == (1, 1, 1, 2)
    assert len(files_read) == 2  # b's new data file and e's
    assert set(cell.manifest()) == set(EDITED)
    assert edit.snapshot_id == source_fingerprint(cell.source, cell.config.documents)


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records")
def test_every_vector_names_the_table_snapshot_that_wrote_its_row(tmp_path):
    table = iceberg_table(tmp_path)
    cell = Cell(tmp_path, iceberg_source(tmp_path))
    wrote = {}
    for key, body in ROWS.items():
        table.append(iceberg_rows({key: body}))
        wrote[key] = table.current_snapshot().snapshot_id
    first = wrote["d"]
    assert cell.refresh() == set(ROWS)
    table.overwrite(iceberg_rows({"b": EDITED["b"]}), overwrite_filter=EqualTo("key", "b"))
    wrote["b"] = table.current_snapshot().snapshot_id
    table.append(iceberg_rows({"e": EDITED["e"]}))
    wrote["e"] = second = table.current_snapshot().snapshot_id
    assert cell.refresh() == {"b", "e"}
    written = {r["doc_id"]: r["metadata_json"] for r in cell.vectors()}
    assert written == {doc: f'{{"iceberg_snapshot_id": {wrote[doc]}}}' for doc in written}
    # `embeddings-platform lineage` shows it, and the table snapshot the platform's snapshot
    # was read at (the one its chunks were cut from)
    [row] = lineage(cell.store, cell.config, "b")
    assert (row["metadata"], row["upstream"]) == (
        {"iceberg_snapshot_id": wrote["b"]},
        {"iceberg_snapshot_id": second},
    )
    [row] = lineage(cell.store, cell.config, "a")
    assert (row["metadata"], row["upstream"]) == (
        {"iceberg_snapshot_id": wrote["a"]},
        {"iceberg_snapshot_id": first},
    )
    # a full read (a freshness re-check) agrees: the same content address
    assert not cell.snapshot(full=True).is_new


def test_iceberg_bad_rows_are_quarantined_with_their_reason(tmp_path):
    table = iceberg_table(tmp_path)
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
    [data_file] = [t.file.file_path for t in table.scan().plan_files()]
    source = Cell(tmp_path, iceberg_source(tmp_path, text_columns=["body", "raw"])).source
    assert [d.doc_id for d in read_source(source)[0]] == ["ok"]
    assert reasons(source) == {
        f"{data_file.rsplit('/', 1)[1]}:row-2": "missing id: column 'key' is NULL or empty",
        "nulltext": "empty: text columns 'body', 'raw' NULL or empty",
        "emptytext": "empty: text columns 'body', 'raw' NULL or empty",
        "ok": "duplicate doc id: first occurrence kept",
        "binary": "undecodable: column 'raw' is not UTF-8: invalid start byte at byte 0",
    }


def test_iceberg_missing_table_or_column_is_a_source_error(tmp_path):
    missing = Cell(tmp_path, iceberg_source(tmp_path)).source
    with pytest.raises(SourceError) as error:
        read_source(missing)
    assert str(error.value) == (
        "sources[lake].table: table 'docs.notes' does not exist in the catalog"
    )
    iceberg_table(tmp_path)
    wrong = Cell(tmp_path, iceberg_source(tmp_path, text_columns=["text"])).source
    with pytest.raises(SourceError) as error:
        read_source(wrong)
    assert str(error.value) == (
        "sources[lake].text_columns: column 'text' is not in table "
        "'docs.notes' (columns: key, body, raw, lang)"
    )
    assert read_source(Cell(tmp_path, iceberg_source(tmp_path)).source) == ([], [])  # empty: valid


def test_iceberg_signature_is_the_current_snapshot_id(tmp_path):
    table = iceberg_table(tmp_path)
    source = Cell(tmp_path, iceberg_source(tmp_path)).source
    assert source.signature() == "empty"
    table.append(iceberg_rows(ROWS))
    first = source.signature()
    assert first == str(table.current_snapshot().snapshot_id) and source.signature() == first
    assert listing_signature(source) == first
    table.overwrite(iceberg_rows(EDITED))
    assert source.signature() == str(table.refresh().current_snapshot().snapshot_id) != first
