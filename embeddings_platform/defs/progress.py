"""How far a running embed is: log lines at regular intervals, and a progress bar on a terminal.

The log lines (counts, share, rate, time left) are what the Dagster UI shows in the run's
log while the step runs; the bar appears only when the run executes in a terminal
(`embeddings-platform materialize`), so daemon and UI runs log without it.
"""

from __future__ import annotations

import sys
import time
from typing import Callable


class EmbedProgress:
    """The `progress(done, total, seconds)` callback of `sync_embeddings`."""

    def __init__(
        self,
        log: Callable[[str], None],
        label: str,
        every_seconds: float = 10.0,
        bar: bool | None = None,
    ):
        self.log = log
        self.label = label
        self.every_seconds = every_seconds
        self.show_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = None
        self._last_log = float("-inf")
        self.lines = 0

    def __call__(self, done: int, total: int, seconds: float) -> None:
        rate = done / max(seconds, 1e-9)
        if self.show_bar:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total, desc=f"embedding {self.label}", unit="chunk", file=sys.stderr
                )
            self._bar.update(done - self._bar.n)
        now = time.monotonic()
        if done >= total or now - self._last_log >= self.every_seconds:
            left = (total - done) / rate if rate > 0 else float("nan")
            self.log(
                f"embedded {done}/{total} chunks ({done / max(total, 1):.0%}), {rate:.1f} "
                f"chunks/s, about {left:.0f} s left"
            )
            self._last_log = now
            self.lines += 1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
