"""Retrieval metrics and labelled-query loading."""

import json
import math

import pytest

from embeddings_platform.core.config import source_from
from embeddings_platform.core.evaluation import (
    LabelledQuery,
    evaluate,
    fold_to_documents,
    labelled_queries,
    load_beir_queries,
    load_canary,
    ndcg_at_k,
    recall_at_k,
)


def test_metrics_on_hand_computed_rankings():
    relevant = {"a": 1, "b": 1}
    assert recall_at_k(["a", "x", "y"], relevant, 3) == 0.5
    assert ndcg_at_k(["a", "b"], relevant, 10) == pytest.approx(1.0)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a"], relevant, 10) == pytest.approx(expected)
    assert ndcg_at_k(["x", "y"], relevant, 10) == 0.0


def test_fold_keeps_best_chunk_per_document():
    assert fold_to_documents([("a", 0.5), ("b", 0.9), ("a", 0.95), ("c", 0.1)], 2) == ["a", "b"]


def test_evaluate_averages_over_queries():
    queries = [LabelledQuery("1", "q1", {"a": 1}), LabelledQuery("2", "q2", {"b": 1})]
    result = evaluate(queries, lambda qs: [["a"], ["x"]], k=10)
    assert result.recall == 0.5 and result.ndcg == 0.5 and result.queries == 2


def test_loads_beir_and_canary(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n2\td3\t2\n"
    )
    (tmp_path / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": i, "text": f"q{i}"}) for i in ("1", "2", "3"))
    )
    queries = load_beir_queries(tmp_path)
    assert [(q.query_id, q.relevant) for q in queries] == [("1", {"d1": 1}), ("2", {"d3": 2})]
    canary = tmp_path / "canary.jsonl"
    canary.write_text(json.dumps({"query": "hello", "relevant": ["x"]}) + "\n")
    assert labelled_queries(source_from(name="s", kind="folder", path=tmp_path, canary=canary))[
        0
    ].relevant == {"x": 1}
    assert [
        q.query_id for q in labelled_queries(source_from(name="b", kind="beir", path=tmp_path))
    ] == ["1", "2"]


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"query": "q", "relevant": ["a"]', "line 2: not JSON"),
        ('["q", ["a"]]', "line 2: expected an object with 'query' and 'relevant'"),
        ('{"relevant": ["a"]}', "line 2: 'query' must be a non-empty string"),
        ('{"query": "  ", "relevant": ["a"]}', "line 2: 'query' must be a non-empty string"),
        ('{"query": "q", "relevant": []}', "line 2: 'relevant' must be a non-empty list"),
        ('{"query": "q", "relevant": "a"}', "line 2: 'relevant' must be a non-empty list"),
    ],
)
def test_a_malformed_canary_line_is_an_error_naming_file_and_line(tmp_path, line, problem):
    canary = tmp_path / "canary.jsonl"
    canary.write_text(json.dumps({"query": "fine", "relevant": ["a"]}) + "\n" + line + "\n\n")
    with pytest.raises(ValueError, match=f"canary file {canary}, {problem}"):
        load_canary(canary)


def test_canary_ids_default_to_line_numbers_and_blank_lines_are_skipped(tmp_path):
    canary = tmp_path / "canary.jsonl"
    canary.write_text(
        "\n".join(
            [
                json.dumps({"query": "a", "relevant": ["x", 7]}),
                "",
                json.dumps({"id": "named", "query": "b", "relevant": ["y"]}),
                json.dumps({"query": "c", "relevant": ["z"]}),
            ]
        )
    )
    queries = load_canary(canary)
    assert [(q.query_id, q.text, q.relevant) for q in queries] == [
        ("1", "a", {"x": 1, "7": 1}),
        ("named", "b", {"y": 1}),
        ("4", "c", {"z": 1}),
    ]
