"""Our fusion against Milvus's own rankers, on Milvus Lite.

For each query we run every route as a plain search (limit 20), feed those lists to our
fusion, and compare with `hybrid_search` over the same requests. What Milvus does
(server: `internal/util/function/rerank/{rrf,weighted}_function.go` and `util.go`;
Milvus Lite 3.x: `function/ops/merge_op.py`, same formulas):

- `RRFRanker(k)`: ``sum_r 1 / (k + rank)`` with rank = 1-based position in each route's
  result list; no weights.
- `WeightedRanker(*w, norm_score=True)` (pymilvus's default): ``sum_r w_r * f_m(s)``
  with the per-metric `f_m` of `fusion.normalize.arctan` (IP ``0.5 + atan(s)/pi``,
  COSINE ``(1 + s)/2``, L2 ``1 - 2 atan(d)/pi``, BM25 ``2 atan(s)/pi``); no min-max.
- `WeightedRanker(*w, norm_score=False)`: ``sum_r w_r * s`` on raw scores when every
  route uses a similarity metric.
- Ties: Milvus Lite 3.x sorts equal fused scores by primary key ascending; native Milvus
  Lite 2.5, like us, puts the better best rank first (then an order of its own); we sort
  them by best rank, then route order.
- Native Milvus Lite 2.5 ignores ``norm_score=False`` (it normalises as with True). Positions inside a tie group are therefore not compared.
"""

import numpy as np
import pytest

from hybridsearch.fusion import RouteList, rrf, weighted

pymilvus = pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker, WeightedRanker  # noqa: E402

from tests.milvus_process import NATIVE_LITE  # noqa: E402

COLLECTION = "parity"
N_DOCS = 200
DIM = 8
SPARSE_DIMS = 50
ROUTE_LIMIT = 20
SCORE_ATOL = 1e-5  # Milvus returns float32 scores
TIE_ATOL = 1e-6

DENSE_FIELDS = {"dense": "IP", "dense_cos": "COSINE", "dense_l2": "L2"}


def make_docs(rng):
    docs = []
    for i in range(N_DOCS):
        dense = rng.normal(size=DIM).astype(np.float32)
        n_terms = int(rng.integers(1, 8))
        dims = rng.choice(SPARSE_DIMS, n_terms, replace=False)
        docs.append(
            {
                "pk": f"doc-{i:04d}",
                "dense": dense.tolist(),
                "dense_cos": dense.tolist(),
                "dense_l2": dense.tolist(),
                "sparse": {int(d): float(v) for d, v in zip(dims, rng.random(n_terms) + 0.01, strict=True)},
            }
        )
    return docs


def make_queries(rng):
    queries = []
    for n_terms in (3, 5, 1, 2, 4, 0):
        dense = rng.normal(size=DIM).astype(np.float32).tolist()
        if n_terms:
            dims = rng.choice(SPARSE_DIMS, n_terms, replace=False)
            sparse = {int(d): float(v) for d, v in zip(dims, rng.random(n_terms) + 0.01, strict=True)}
        else:
            sparse = {SPARSE_DIMS + 7: 1.0}  # a term no document has: the sparse route is empty
        queries.append({"dense": dense, "sparse": sparse})
    return queries


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    client = MilvusClient(str(tmp_path_factory.mktemp("milvus") / "m.db"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    for field in DENSE_FIELDS:
        schema.add_field(field, DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    for field, metric in DENSE_FIELDS.items():
        index.add_index(field, index_type="FLAT", metric_type=metric)
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(COLLECTION, schema=schema, index_params=index)
    rng = np.random.default_rng(7)
    client.insert(COLLECTION, make_docs(rng))
    client.flush(COLLECTION)
    yield client
    client.close()


@pytest.fixture(scope="module")
def queries():
    return make_queries(np.random.default_rng(11))


def metric_of(field):
    return DENSE_FIELDS.get(field, "IP")


def request(query, field):
    data = query["sparse"] if field == "sparse" else query["dense"]
    return AnnSearchRequest([data], field, {"metric_type": metric_of(field)}, ROUTE_LIMIT)


def route_list(client, query, field):
    data = query["sparse"] if field == "sparse" else query["dense"]
    hits = client.search(
        COLLECTION,
        data=[data],
        anns_field=field,
        limit=ROUTE_LIMIT,
        output_fields=["pk"],
        search_params={"metric_type": metric_of(field)},
    )[0]
    return RouteList(field, [hit.id for hit in hits], np.array([hit.distance for hit in hits]))


def hybrid(client, query, fields, ranker, limit):
    hits = client.hybrid_search(
        COLLECTION, [request(query, f) for f in fields], ranker, limit=limit, output_fields=["pk"]
    )[0]
    return [hit.id for hit in hits], np.array([hit.distance for hit in hits], dtype=np.float64)


def assert_same_ranking(ours, milvus_ids, milvus_scores):
    """Same length, same scores position by position, same ids outside tie groups."""
    n = len(milvus_ids)
    top = ours.head(n)
    np.testing.assert_allclose(top.scores, milvus_scores, rtol=0, atol=SCORE_ATOL)
    ours_by_id = dict(zip(ours.ids, ours.scores, strict=True))
    for doc_id, score in zip(milvus_ids, milvus_scores, strict=True):
        assert abs(ours_by_id[doc_id] - score) <= SCORE_ATOL, doc_id
    for i in range(n):
        tied_before = i > 0 and abs(top.scores[i] - top.scores[i - 1]) <= TIE_ATOL
        tied_after = i + 1 < len(ours) and abs(ours.scores[i] - ours.scores[i + 1]) <= TIE_ATOL
        if not (tied_before or tied_after):
            assert top.ids[i] == milvus_ids[i], f"position {i}"


CASES = [
    ("rrf k=60", ("dense", "sparse"), RRFRanker(60), lambda r: rrf(r, k=60)),
    ("rrf k=5", ("dense", "sparse"), RRFRanker(5), lambda r: rrf(r, k=5)),
    (
        "weighted norm IP+IP",
        ("dense", "sparse"),
        WeightedRanker(0.7, 0.3, norm_score=True),
        lambda r: weighted(r, weights=[0.7, 0.3], normalizer="arctan", metrics=["IP", "IP"]),
    ),
    (
        "weighted raw IP+IP",
        ("dense", "sparse"),
        WeightedRanker(0.7, 0.3, norm_score=False),
        # Native Milvus Lite 2.5 ignores norm_score=False and normalises anyway.
        (lambda r: weighted(r, weights=[0.7, 0.3], normalizer="arctan", metrics=["IP", "IP"]))
        if NATIVE_LITE
        else (lambda r: weighted(r, weights=[0.7, 0.3], normalizer="none")),
    ),
    (
        "weighted norm COSINE+IP",
        ("dense_cos", "sparse"),
        WeightedRanker(0.4, 0.6, norm_score=True),
        lambda r: weighted(r, weights=[0.4, 0.6], normalizer="arctan", metrics=["COSINE", "IP"]),
    ),
    (
        "weighted norm L2+IP",
        ("dense_l2", "sparse"),
        WeightedRanker(0.5, 0.5, norm_score=True),
        lambda r: weighted(r, weights=[0.5, 0.5], normalizer="arctan", metrics=["L2", "IP"]),
    ),
    (
        "weighted raw COSINE+IP",
        ("dense_cos", "sparse"),
        WeightedRanker(1.0, 0.2, norm_score=False),
        (lambda r: weighted(r, weights=[1.0, 0.2], normalizer="arctan", metrics=["COSINE", "IP"]))
        if NATIVE_LITE
        else (lambda r: weighted(r, weights=[1.0, 0.2], normalizer="none")),
    ),
]


@pytest.mark.parametrize("limit", [2 * ROUTE_LIMIT, 10])
@pytest.mark.parametrize(("label", "fields", "ranker", "ours"), CASES, ids=[c[0] for c in CASES])
def test_fusion_matches_milvus_hybrid_search(milvus, queries, label, fields, ranker, ours, limit):
    for query in queries:
        routes = [route_list(milvus, query, field) for field in fields]
        fused = ours(routes)
        milvus_ids, milvus_scores = hybrid(milvus, query, fields, ranker, limit)
        assert len(milvus_ids) == min(limit, len(fused))
        assert_same_ranking(fused, milvus_ids, milvus_scores)


def test_parity_queries_cover_short_and_empty_sparse_routes(milvus, queries):
    lengths = [len(route_list(milvus, q, "sparse")) for q in queries]
    assert 0 in lengths  # one-sided: dense only
    assert any(0 < n < ROUTE_LIMIT for n in lengths)  # a short sparse route
    assert ROUTE_LIMIT in lengths


def test_how_milvus_breaks_rrf_ties(milvus, queries):
    """Milvus Lite 3.x sorts equal RRF scores by primary key; we (and, measured, native Milvus
    Lite 2.5) put the better-ranked candidate first."""
    ties_seen = 0
    for query in queries:
        milvus_ids, milvus_scores = hybrid(milvus, query, ("dense", "sparse"), RRFRanker(60), 2 * ROUTE_LIMIT)
        best_rank = {}
        for route in (route_list(milvus, query, "dense"), route_list(milvus, query, "sparse")):
            for rank, doc_id in enumerate(route.ids):
                best_rank[doc_id] = min(best_rank.get(doc_id, rank), rank)
        for i in range(1, len(milvus_ids)):
            if milvus_scores[i] == milvus_scores[i - 1]:
                ties_seen += 1
                if NATIVE_LITE:
                    assert best_rank[milvus_ids[i - 1]] <= best_rank[milvus_ids[i]]
                else:
                    assert milvus_ids[i - 1] < milvus_ids[i]
    assert ties_seen > 0
