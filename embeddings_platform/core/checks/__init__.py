"""Health checks of the stored vectors and the serving index: pure functions, no Dagster.

Each check returns a report with a severity (`ok`, `warn`, `error`), human-readable
`problems`, and `metadata()`: numbers only, so the Dagster UI can plot them over time.

- `consistency`: one model version per table, dimension equal to the model's, no NaN,
  infinite, null or zero-norm vectors, no duplicate chunk_id, chunk and vector counts agree,
  the serving pointer targets an existing table version. Any problem is an ERROR; the
  pipeline calls it before moving a serving pointer.
- `staleness`: vectors whose chunk changed or vanished, chunks without a vector, documents
  deleted or changed in the newest snapshot but still present/served, and how long the
  data has lagged behind the newest snapshot. WARN/ERROR past configurable thresholds.
- `ann_recall`: recall@k of the ANN index against exact search on the same table version,
  with stored vectors as queries. ERROR below a floor.
- `retrieval_recall`: recall@k / nDCG@k of labelled queries through the served table, plus
  ragas' ID-based context recall and precision, compared with a stored baseline.
"""

from .ann_recall import AnnRecallReport, ann_recall
from .baselines import get_baseline, record_baseline, reset_baseline
from .common import ERROR, OK, WARN, shard_rows, worst
from .consistency import ConsistencyError, ConsistencyReport, consistency
from .quarantine import QuarantineReport, quarantine, reason_kind
from .query_cache import cached_query_embedder
from .ragas_scores import ragas_id_scores
from .retrieval import RetrievalReport, labels_sha256, retrieval_recall
from .staleness import StalenessReport, staleness

__all__ = [
    "ERROR",
    "OK",
    "WARN",
    "AnnRecallReport",
    "ConsistencyError",
    "ConsistencyReport",
    "QuarantineReport",
    "RetrievalReport",
    "StalenessReport",
    "ann_recall",
    "cached_query_embedder",
    "consistency",
    "get_baseline",
    "labels_sha256",
    "quarantine",
    "ragas_id_scores",
    "reason_kind",
    "record_baseline",
    "reset_baseline",
    "retrieval_recall",
    "shard_rows",
    "staleness",
    "worst",
]
