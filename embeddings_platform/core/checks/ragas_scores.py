"""ragas' ID-based context recall and precision: label-based, no LLM involved."""

from __future__ import annotations

import os
import sys
import types
import warnings
from typing import Sequence

import numpy as np

from ..evaluation import LabelledQuery


def _load_ragas_id_metrics():
    """ragas' ID-based context recall and precision (no LLM involved).

    ragas 0.4.3 imports `langchain_community.chat_models.vertexai` at package import, a
    module newer langchain-community releases removed (vibrantlabsai/ragas#2745); ragas only
    uses that class in an isinstance list, so an empty stand-in is registered when it is
    missing. Usage tracking is switched off: nothing leaves this machine.
    """
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    shim = "langchain_community.chat_models.vertexai"
    if shim not in sys.modules:
        try:
            __import__(shim)
        except ImportError:
            module = types.ModuleType(shim)
            module.ChatVertexAI = type("ChatVertexAI", (), {})  # never instantiated
            sys.modules[shim] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas import SingleTurnSample
        from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall
    return SingleTurnSample, IDBasedContextRecall(), IDBasedContextPrecision()


def ragas_id_scores(
    rankings: Sequence[Sequence[str]], queries: Sequence[LabelledQuery]
) -> tuple[float, float]:
    """Mean ragas ID-based context (recall, precision) of retrieved doc ids vs labelled ones."""
    sample_cls, recall_metric, precision_metric = _load_ragas_id_metrics()
    recalls, precisions = [], []
    for ranked, query in zip(rankings, queries):
        sample = sample_cls(
            retrieved_context_ids=list(ranked), reference_context_ids=sorted(query.relevant)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = recall_metric.single_turn_score(sample)
            p = precision_metric.single_turn_score(sample) if ranked else 0.0
        recalls.append(r)
        precisions.append(p)
    return float(np.nanmean(recalls)) if recalls else 0.0, float(
        np.nanmean(precisions)
    ) if precisions else 0.0
