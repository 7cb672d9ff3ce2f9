"""Progress of an embed on a timer: a first line before the first (slow) batch ends, lines spaced
by the timer and not by batches, throughput over embedding time only, and a line when there is
nothing to embed."""

from __future__ import annotations

import time

from embeddings_platform.core.models import HashingEmbedder, load_tokenizer, model_version
from embeddings_platform.core.pipeline import sync_chunks, sync_embeddings, take_snapshot
from embeddings_platform.core.progress import EmbedProgress
from embeddings_platform.testing import many_docs, write_config


def _chunked(store, config):
    model = config.models[0]
    snap = take_snapshot(store, config.sources[0], "r1")
    sync_chunks(
        store,
        config.sources[0].name,
        snap.snapshot_id,
        model,
        model_version(model).chunking_strategy,
        load_tokenizer(model),
    )
    return model_version(model)


class Timeline:
    """Log lines and batch ends, each with the time it happened."""

    def __init__(self):
        self.started = time.monotonic()
        self.events: list[tuple[float, str, str]] = []

    def line(self, text: str) -> None:
        self.events.append((time.monotonic() - self.started, "line", text))

    def batch(self) -> None:
        self.events.append((time.monotonic() - self.started, "batch", ""))

    def times(self, kind: str) -> list[float]:
        return [t for t, k, _ in self.events if k == kind]


class SlowEmbedder(HashingEmbedder):
    def __init__(self, timeline: Timeline, seconds: float):
        super().__init__(256)
        self.timeline, self.seconds = timeline, seconds

    def embed(self, texts):
        time.sleep(self.seconds)
        out = super().embed(texts)
        self.timeline.batch()
        return out


def test_the_first_line_comes_before_the_first_slow_batch_and_lines_follow_the_timer(store, config):
    version = _chunked(store, config)  # 8 chunks: two batches of 4
    timeline = Timeline()

    def slow_load():
        time.sleep(0.6)  # a model load: not embedding time
        return SlowEmbedder(timeline, seconds=1.5)

    with EmbedProgress(timeline.line, first_after=0.2, every=0.5) as progress:
        report = sync_embeddings(
            store, "notes", version, slow_load, "r1", batch_size=4, progress=progress
        )
    assert report.embedded == 8
    lines, batches = timeline.times("line"), timeline.times("batch")
    assert len(batches) == 2
    assert lines[0] < 0.6 < batches[0]  # the first line came during the model load
    texts = [text for _, kind, text in timeline.events if kind == "line"]
    assert texts[0].startswith("loading the model (0 s) before embedding 8 chunks (0 unchanged)")
    assert any(t.startswith("embedding 8 chunks: first batch running") for t in texts)
    assert any(t.startswith("embedded 4/8 chunks (50%)") for t in texts)  # between the batches
    timer_lines = lines[:-1]  # the last one is the closing summary
    gaps = [b - a for a, b in zip(timer_lines, timer_lines[1:])]
    assert len(timer_lines) >= 5 and min(gaps) >= 0.45  # ~3.6 s of step, one line every 0.5 s
    # throughput over embedding time only: 8 chunks in ~3 s of batches, not ~3.6 s with the load
    assert progress.load_seconds >= 0.6
    assert abs(progress.embed_seconds - 3.0) < 0.5
    assert progress.rate == 8 / progress.embed_seconds
    assert texts[-1].startswith(f"embedded 8 chunks in {progress.embed_seconds:.1f} s of embedding")
    assert f"model load {progress.load_seconds:.1f} s" in texts[-1]


def test_many_quick_batches_log_no_line_per_batch(tmp_path):
    many_docs(tmp_path / "corpus", 60)
    path = write_config(
        tmp_path / "c.yaml", [{"name": "notes", "kind": "folder", "path": str(tmp_path / "corpus")}]
    )
    from embeddings_platform.core.config import load_config
    from embeddings_platform.core.store import Store

    config = load_config(path)
    store = Store(config.storage_uri)
    version = _chunked(store, config)
    lines: list[str] = []
    with EmbedProgress(lines.append, first_after=3600, every=3600) as progress:
        report = sync_embeddings(
            store,
            "notes",
            version,
            lambda: HashingEmbedder(256),
            "r1",
            batch_size=1,
            progress=progress,
        )
    assert report.embedded > 60  # as many batches as chunks
    assert len(lines) == 1 and lines[0].startswith(f"embedded {report.embedded} chunks in ")


def test_nothing_to_embed_says_so_with_the_number_unchanged(store, config):
    version = _chunked(store, config)
    sync_embeddings(store, "notes", version, lambda: HashingEmbedder(256), "r1")
    lines: list[str] = []
    loads = []
    with EmbedProgress(lines.append, label="notes x hash") as progress:
        report = sync_embeddings(
            store, "notes", version, lambda: loads.append(1), "r2", progress=progress
        )
    assert report.embedded == 0 and report.skipped == 8 and not loads
    assert lines == ["notes x hash: nothing to embed (8 unchanged)"]
    assert progress.load_seconds == 0.0


def test_each_line_says_where_the_step_is():
    now = [100.0]
    progress = EmbedProgress(lambda _: None, clock=lambda: now[0])
    now[0] = 103.0
    assert progress.line() == "reading chunks and vectors (3 s)"
    progress.planned(1000, 24)
    progress.loading_model()
    now[0] = 115.0
    assert progress.line() == "loading the model (12 s) before embedding 1000 chunks (24 unchanged)"
    progress.model_loaded()
    assert progress.load_seconds == 12.0
    now[0] = 120.0
    assert progress.line() == "embedding 1000 chunks: first batch running (20 s)"
    progress.embedded(250, 10.0)  # 25 chunks/s of embedding time: 750 left take 30 s
    assert progress.line() == "embedded 250/1000 chunks (25%), 25.0 chunks/s, about 30 s left"
    now[0] = 132.0  # the next batch has run 12 s: the estimate counts down meanwhile
    assert progress.line() == "embedded 250/1000 chunks (25%), 25.0 chunks/s, about 18 s left"
