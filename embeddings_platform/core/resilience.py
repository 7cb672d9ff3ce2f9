"""Model calls that fail: retried with backoff and jitter, then bisected to the item at fault.

A transient failure (a flaky remote model, a memory spike) is retried with exponential
backoff and jitter (tenacity) up to `retry.attempts` and `retry.budget_seconds`. A batch that
still fails is split in halves, each tried again, down to single items: the items that fail
alone are returned as failures (the caller dead-letters them) and every other item of the
batch is embedded and written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from tenacity import (
    Retrying,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .config import RetryConfig


@dataclass
class EmbedOutcome:
    """Vectors of the items that embedded (in `indices` order) and the reasons of those that
    did not."""

    indices: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    retries: int = 0

    def matrix(self) -> np.ndarray:
        return np.vstack(self.vectors) if self.vectors else np.empty((0, 0), dtype=np.float32)


def checked_vectors(vectors: np.ndarray, expected_rows: int) -> np.ndarray:
    """What a model returned, or an error: wrong shape and NaN/inf are failures too."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != expected_rows:
        raise ValueError(f"embedder returned shape {vectors.shape} for {expected_rows} texts")
    if not np.isfinite(vectors).all():
        raise ValueError("embedder returned NaN or infinite values")
    return vectors


def embed_isolating_failures(
    embed: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    retry: RetryConfig = RetryConfig(),
    sleep: Callable[[float], None] = time.sleep,
) -> EmbedOutcome:
    """Embed `texts`, retrying transient failures and isolating items that keep failing."""
    outcome = EmbedOutcome()

    def call(indices: list[int], attempts: int) -> np.ndarray:
        retrying = Retrying(
            stop=stop_after_attempt(attempts) | stop_after_delay(retry.budget_seconds),
            wait=wait_exponential_jitter(initial=retry.initial_seconds, max=retry.max_seconds),
            sleep=sleep,
            reraise=True,
        )
        try:
            return retrying(
                lambda: checked_vectors(embed([texts[i] for i in indices]), len(indices))
            )
        finally:
            outcome.retries += max(0, retrying.statistics.get("attempt_number", 1) - 1)

    def run(indices: list[int], attempts: int) -> None:
        try:
            vectors = call(indices, attempts)
        except Exception as exc:  # noqa: BLE001 - any model error: bisect, never lose the batch
            if len(indices) == 1:
                outcome.failures[indices[0]] = f"{type(exc).__name__}: {exc}"[:500]
                return
            middle = len(indices) // 2
            run(indices[:middle], retry.bisect_attempts)
            run(indices[middle:], retry.bisect_attempts)
            return
        outcome.indices.extend(indices)
        outcome.vectors.append(vectors)

    if texts:
        run(list(range(len(texts))), retry.attempts)
    return outcome
