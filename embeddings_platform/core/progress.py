"""How far a running embed is, told on a timer rather than per batch.

A batch of a slow model (or the model load before it) can take minutes; a line per batch left
the first line 93 s into a step. Here a thread logs the current state a few seconds after the
step starts and then at a steady interval, whatever the batches do; the throughput it reports
counts embedding time only, never the model load. Pure Python: the Dagster layer passes its
`context.log.info` as `log`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

FIRST_LINE_SECONDS = 5.0  # the first line, well within 10 s of the step's start
EVERY_SECONDS = 20.0  # then one line every 20 s (10-30 s: often enough to see it move)


class EmbedProgress:
    """What `sync_embeddings` reports to (`planned`, `loading_model`, `model_loaded`, `embedded`),
    and the timer that turns it into log lines. Use as a context manager around the step."""

    def __init__(
        self,
        log: Callable[[str], None],
        label: str = "",
        first_after: float = FIRST_LINE_SECONDS,
        every: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._log = log
        self.label = label
        self.first_after = first_after
        self.every = every
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.to_embed: int | None = None  # None until the chunks to embed are known
        self.unchanged = 0
        self.done = 0
        self.embed_seconds = 0.0
        self.load_seconds = 0.0
        self._loading_since: float | None = None
        self._batch_done_at = self._started
        self.lines = 0

    # --- what sync_embeddings tells it ------------------------------------------------------

    def planned(self, to_embed: int, unchanged: int) -> None:
        with self._lock:
            self.to_embed, self.unchanged = to_embed, unchanged
        if to_embed == 0:
            self.log(f"nothing to embed ({unchanged} unchanged)")

    def loading_model(self) -> None:
        with self._lock:
            self._loading_since = self._clock()

    def model_loaded(self) -> None:
        with self._lock:
            if self._loading_since is not None:
                self.load_seconds += self._clock() - self._loading_since
            self._loading_since = None

    def embedded(self, done: int, embed_seconds: float) -> None:
        with self._lock:
            self.done, self.embed_seconds = done, embed_seconds
            self._batch_done_at = self._clock()

    # --- the lines ----------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Chunks per second of embedding time (model load and writes excluded); 0 before any."""
        return self.done / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def line(self) -> str:
        """The state now, as one line."""
        with self._lock:
            elapsed = self._clock() - self._started
            if self.to_embed is None:
                return f"reading chunks and vectors ({elapsed:.0f} s)"
            if self._loading_since is not None:
                return (
                    f"loading the model ({self._clock() - self._loading_since:.0f} s) before "
                    f"embedding {self.to_embed} chunks ({self.unchanged} unchanged)"
                )
            if self.done == 0:
                return f"embedding {self.to_embed} chunks: first batch running ({elapsed:.0f} s)"
            # the time left counts down while a batch runs (its chunks are not done yet)
            since = self._clock() - self._batch_done_at
            left = max(0.0, (self.to_embed - self.done) / self.rate - since)
            return (
                f"embedded {self.done}/{self.to_embed} chunks ({self.done / self.to_embed:.0%}), "
                f"{self.rate:.1f} chunks/s, about {left:.0f} s left"
            )

    def summary(self) -> str:
        """The closing line of a step that embedded something."""
        return (
            f"embedded {self.done} chunks in {self.embed_seconds:.1f} s of embedding "
            f"({self.rate:.1f} chunks/s; model load {self.load_seconds:.1f} s), "
            f"{self.unchanged} unchanged"
        )

    def log(self, text: str) -> None:
        self._log(f"{self.label}: {text}" if self.label else text)
        self.lines += 1

    # --- the timer ----------------------------------------------------------------------------

    def start(self) -> "EmbedProgress":
        self._thread = threading.Thread(target=self._run, name="embed-progress", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        wait = self.first_after
        while not self._stop.wait(wait):
            self.log(self.line())
            wait = self.every

    def stop(self) -> None:
        """Stop the timer; the closing line is logged if anything was embedded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.done:
            self.log(self.summary())

    def __enter__(self) -> "EmbedProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
