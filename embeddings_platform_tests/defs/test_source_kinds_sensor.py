"""The change sensor over the table kinds (parquet, postgres, iceberg), through Dagster: an
unchanged source requests nothing; an edit, a delete and an insert request one snapshot run,
which reads only what changed, and the automation then embeds exactly the changed documents."""

from __future__ import annotations

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, SensorResult, SkipReason

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.defs.resources import PlatformResource, cached_embedder
from embeddings_platform.defs.runner import (
    materialize_graph,
    run_automation_until_quiet,
    run_sensor_requests,
)
from embeddings_platform.testing import write_config

from ..core.sources_shared import (
    EDITED,
    ROWS,
    iceberg_rows,
    iceberg_source,
    iceberg_table,
    parquet_source,
    pg_write,
    postgres_source,
    write_parquet,
)
from .test_refresh import _tick


def _parquet(tmp_path, request):
    """Two files: the edit lands in one, the other is not read again."""
    parts = tmp_path / "parts"
    parts.mkdir()
    write_parquet(
        parts / "0-static.parquet", {"s1": "Static rows stay as they are.", "s2": "Kept."}
    )

    def write(rows):
        write_parquet(parts / "1-live.parquet", rows)

    return parquet_source(tmp_path, path=str(parts)), write, len(EDITED)


def _postgres(tmp_path, request):
    pg, table = request.getfixturevalue("pg"), request.getfixturevalue("pg_table")
    # b, e, and d: the row at the last watermark is read again (a tie may have committed later)
    return postgres_source(table), lambda rows: pg_write(pg, table, rows), 3


def _iceberg(tmp_path, request):
    table = iceberg_table(tmp_path)
    return iceberg_source(tmp_path), lambda rows: table.overwrite(iceberg_rows(rows)), len(EDITED)


KINDS = {"parquet": _parquet, "postgres": _postgres, "iceberg": _iceberg}


def _snapshot_metadata(instance, partition: str) -> dict:
    latest = AssetRecordsFilter(asset_key=AssetKey("source_snapshot"), asset_partitions=[partition])
    [record] = instance.fetch_materializations(latest, limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_sensor_requests_one_run_per_change_and_only_changes_are_embedded(
    kind, tmp_path, monkeypatch, request
):
    source, write, reread = KINDS[kind](tmp_path, request)
    path = write_config(tmp_path / "platform.yaml", [source])
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    config = load_config(path)
    name = config.sources[0].name
    write(ROWS)
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    assert all(r.success for r in materialize_graph(instance, config, resources=resources))
    _, automation = run_automation_until_quiet(instance, resources)
    embedder = cached_embedder(config.models[0])
    calls, texts = embedder.calls, embedder.texts_embedded

    result, cursor = _tick(instance)  # unchanged: nothing requested, nothing embedded
    assert isinstance(result, SkipReason)
    result, cursor = _tick(instance, cursor)
    assert isinstance(result, SkipReason) and embedder.calls == calls

    write(EDITED)  # b edited, c deleted, e inserted
    result, cursor = _tick(instance, cursor)
    assert isinstance(result, SensorResult)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [("snapshot_job", name)]
    run_sensor_requests(instance, result, resources)
    run_automation_until_quiet(instance, resources, automation)
    metadata = _snapshot_metadata(instance, name)
    assert (metadata["added"], metadata["changed"], metadata["removed"]) == (1, 1, 1)
    assert (metadata["documents_read"], metadata["full_read"]) == (reread, False)
    assert embedder.texts_embedded - texts == 2  # b and e: one chunk each, nothing else
    vectors = Store(config.storage_uri).table(
        vectors_table_name(name, model_version(config.models[0]).version_id)
    )
    assert {"b", "e"} <= {r["doc_id"] for r in vectors.to_arrow().to_pylist()}
    assert "c" not in {r["doc_id"] for r in vectors.to_arrow().to_pylist()}

    result, _ = _tick(instance, cursor)  # the change is in: nothing more to do
    assert isinstance(result, SkipReason)
