"""The state database on both backends: SQLite (one node) and a real PostgreSQL (replicas).

Every store behaves the same on either; on PostgreSQL two store objects stand for two
replicas sharing one database.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest

from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.engine.bm25 import Bm25Encoder, Bm25Stats, CorpusStats
from hybridsearch.engine.budget_store import BudgetStore
from hybridsearch.engine.rate_ledger import CHUNKS_PER_MINUTE, RateLedger
from hybridsearch.engine.statedb import StateDB, StateDBError, redact, settings_target, shared
from hybridsearch.rerank.budgets import RerankBudget
from tests.conftest import FakeClock
from tests.milvus_process import free_port

BACKENDS = ["sqlite", "postgres"]
DEFAULT = RerankBudget(max_depth=50)


@pytest.fixture(params=BACKENDS)
def target(request, tmp_path):
    """Where the state lives: a SQLite file, or a database of its own on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite3")
    return request.getfixturevalue("postgres_uri")


@pytest.fixture
def db(target):
    db = StateDB(target)
    yield db
    db.close()


# ---------------------------------------------------------------------- the database


def test_statedb_writes_commit_and_a_raising_write_rolls_back(db):
    db.write(
        lambda tx: tx.create_tables(
            "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BIGINT NOT NULL) WITHOUT ROWID"
        )
    )
    assert db.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", 1)) == 1

    def fails(tx):
        tx.execute("UPDATE t SET v = ? WHERE k = ?", (99, "a"))
        tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("b", 2))
        raise RuntimeError("half way")

    with pytest.raises(RuntimeError):
        db.write(fails)
    assert db.query("SELECT k, v FROM t ORDER BY k") == [("a", 1)]
    # The same SQL on both: ? placeholders, ON CONFLICT upserts, a literal %.
    db.execute("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = t.v + excluded.v", ("a", 5))
    assert db.query_one("SELECT v FROM t WHERE k = ? AND k LIKE '%a%'", ("a",)) == (6,)
    assert db.read(lambda tx: abs(tx.now() - time.time())) < 5


def test_statedb_shared_is_one_per_database_and_settings_choose_it(tmp_path, postgres_uri):
    from hybridsearch.engine.config import Settings

    sqlite_settings = Settings(data_dir=tmp_path)
    assert settings_target(sqlite_settings) == str(tmp_path / "state.sqlite3")
    assert shared(sqlite_settings) is shared(str(tmp_path / "state.sqlite3"))
    pg = Settings(data_dir=tmp_path, state_uri=postgres_uri)
    assert shared(pg).postgres and shared(pg) is shared(postgres_uri)
    with pytest.raises(ValueError, match="state_uri"):
        Settings(state_uri="mysql://somewhere/db")


def test_unreachable_postgres_is_an_error_naming_state_uri_without_the_password():
    uri = f"postgresql://hsearch:s3cret@127.0.0.1:{free_port()}/state"
    with pytest.raises(StateDBError) as info:
        ApiKeyStore(uri)
    message = info.value.message
    assert "state_uri" in message and "s3cret" not in message and "127.0.0.1" in message
    assert redact(uri) == f"postgresql://hsearch:***@127.0.0.1:{uri.split(':')[3]}"


def test_postgres_connection_dropped_by_the_server_is_replaced(postgres_uri):
    keys = ApiKeyStore(postgres_uri)
    _, secret = keys.create("acme", "search")
    with psycopg.connect(postgres_uri, autocommit=True) as admin:  # what a PostgreSQL restart does
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1
    keys._cache.clear()
    assert keys.verify(secret) is not None  # a read on a fresh connection
    assert keys.create("acme", "write")[0].role == "write"  # and a write
    keys.close()


def test_stores_made_at_once_by_several_replicas_create_their_tables_once(postgres_uri):
    errors = []
    barrier = threading.Barrier(6)

    def open_all():
        try:
            barrier.wait()
            for store in (ApiKeyStore(postgres_uri), BudgetStore(postgres_uri, DEFAULT), Bm25Stats(postgres_uri)):
                store.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_all) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


# ---------------------------------------------------------------------- API keys


def test_keys_create_verify_list_revoke(target):
    store = ApiKeyStore(target)
    record, secret = store.create("acme", "write", "ingest job")
    other, _ = store.create("beta", "search")
    assert store.verify(secret) == record and store.get(record.key_id) == record
    assert record.created_unix == pytest.approx(time.time(), abs=60)
    assert store.verify(secret[:-1] + "x") is None and store.verify("nonsense") is None
    assert [r.key_id for r in store.list("acme")] == [record.key_id]
    assert [r.key_id for r in store.list()] == [record.key_id, other.key_id]
    assert store.revoke(record.key_id) is True and store.revoke(record.key_id) is False
    assert store.verify(secret) is None and store.get(record.key_id).revoked
    with pytest.raises(ValueError):
        store.create("acme", "root")
    store.close()


def test_a_key_revoked_through_one_store_is_refused_by_another_within_the_cache_time(target):
    assert ApiKeyStore.CACHE_S <= 2.0
    first, second = ApiKeyStore(target), ApiKeyStore(target)
    record, secret = first.create("acme", "search")
    assert second.verify(secret) == record  # made on one, known to the other (now cached there)
    first.revoke(record.key_id)
    start = time.monotonic()
    while second.verify(secret) is not None:
        assert time.monotonic() - start < 5
        time.sleep(0.05)
    assert time.monotonic() - start <= ApiKeyStore.CACHE_S + 0.5
    first.close(), second.close()


# ---------------------------------------------------------------------- budgets


def test_budgets_set_get_list_delete(target):
    store = BudgetStore(target, DEFAULT)
    acme = RerankBudget(
        tenant="acme",
        latency_target_ms=80.5,
        max_cost_per_query=900,
        cost_per_minute=1e6,
        min_depth=2,
        max_depth=40,
        default_mode="auto",
    )
    beta = RerankBudget(tenant="beta", max_depth=10, default_mode="fixed")
    store.set(acme), store.set(beta)
    assert store.get("acme") == acme and store.list() == [acme, beta]
    assert store.effective("nobody") == DEFAULT
    assert store.delete("acme") is True and store.delete("acme") is False
    assert store.get("acme") is None and store.list() == [beta]
    store.close()


def test_a_budget_changed_through_one_store_is_in_force_on_another_within_the_cache_time(target):
    assert BudgetStore.CACHE_S <= 2.0
    first, second = BudgetStore(target, DEFAULT), BudgetStore(target, DEFAULT)
    assert second.effective("acme") == DEFAULT  # cached: "no budget of its own"
    wanted = first.set(RerankBudget(tenant="acme", max_depth=7, default_mode="fixed"))
    start = time.monotonic()
    while second.effective("acme") != wanted:
        assert time.monotonic() - start < 5
        time.sleep(0.05)
    assert time.monotonic() - start <= BudgetStore.CACHE_S + 0.5
    first.close(), second.close()


# ---------------------------------------------------------------------- BM25 statistics


def test_bm25_statistics_apply_idf_and_drop(target):
    stats = Bm25Stats(target)
    enc = Bm25Encoder(stats=stats)
    enc.document_vectors("c", "a", ["heart disease risk", "heart attack", "sleep and memory"])
    assert stats.corpus("c", "a") == CorpusStats(3, 7)
    heart = enc.analyzer.term_counts("heart")
    (term,) = heart
    assert stats.df("c", "a", [term]) == {term: 2}
    assert stats.idf("c", "a", [term])[term] == pytest.approx(0.4700036292457356)
    stats.apply("c", "a", removed=[Counter({term: 1})])
    assert stats.df("c", "a", [term]) == {term: 1} and stats.corpus("c", "a").n_docs == 2
    assert stats.apply("c", "b", [Counter({0xFFFFFFFF: 2})]) == CorpusStats(1, 2)  # uint32 terms
    stats.drop_tenant("c", "b")
    assert stats.corpus("c", "b") == CorpusStats()
    stats.drop("c")
    assert stats.corpus("c", "a") == CorpusStats() and stats.idf("c", "a", [term]) == {}
    stats.close()
    with pytest.raises(RuntimeError):
        stats.corpus("c", "a")


def test_two_replicas_ingesting_at_once_keep_exact_shared_statistics(target):
    """What one replica ingests, the other's query encoding uses; concurrent ingests through
    both lose no count (the corpus row serialises them)."""
    replicas = [Bm25Encoder(stats=Bm25Stats(target)) for _ in range(2)]
    errors = []

    def ingest(enc, i):
        try:
            for j in range(10):
                enc.document_vectors("c", "a", [f"heart replica{i} batch{j} doc{k}" for k in range(3)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(enc, i)) for i, enc in enumerate(replicas) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    first, second = (enc.stats for enc in replicas)
    assert first.corpus("c", "a") == second.corpus("c", "a") == CorpusStats(120, 480)
    (heart,) = replicas[0].analyzer.term_counts("heart")
    assert second.df("c", "a", [heart]) == {heart: 120}
    assert replicas[0].query_vector("c", "a", "heart doc1") == replicas[1].query_vector("c", "a", "heart doc1")
    for enc in replicas:
        enc.stats.close()


# ---------------------------------------------------------------------- rate budgets


def test_ledger_leases_chunks_refills_by_the_shared_clock_and_limits_when_empty(db):
    clock = FakeClock()
    ledger = RateLedger(db, clock=clock, local_clock=clock)
    leases = []
    lease = ledger.lease
    ledger.lease = lambda *a: leases.append(a) or lease(*a)
    bucket = ledger.bucket("acme", 600)  # 10 tokens a second
    assert bucket.left() == 600 and bucket.available() == 0 and not leases  # nothing asked, nothing leased
    chunk = 600 / CHUNKS_PER_MINUTE
    assert chunk >= 10 and chunk % 5 == 0
    assert bucket.available(10) == chunk  # a chunk, not just the 10 asked
    assert ledger.level("acme") == 600 - chunk
    bucket.spend(10)
    for _ in range(int(chunk - 10) // 5):
        bucket.available(5)
        bucket.spend(5)
    assert len(leases) == 1 and bucket.allowance == 0  # spent locally, no round trip
    assert bucket.available(200) == 200  # a search that costs more than a chunk leases its cost
    bucket.spend(200)
    assert bucket.available(600) == 600 - chunk - 200  # what the shared bucket had left
    bucket.spend(600 - chunk - 200)
    assert ledger.level("acme") == 0 and bucket.left() == 0
    n = len(leases)
    assert bucket.available(10) == 0 and len(leases) == n  # empty: no round trip per search
    clock.advance(2.0)  # refills 20 tokens
    assert bucket.available(10) == min(20, chunk) and len(leases) == n + 1
    clock.advance(3600)
    # The shared bucket never holds more than a minute; the allowance held stays out of it.
    assert bucket.left() == pytest.approx(min(20, chunk) + 600)


def test_ledger_a_smaller_budget_caps_the_shared_bucket_and_the_allowance(db):
    clock = FakeClock()
    ledger = RateLedger(db, clock=clock, local_clock=clock)
    bucket = ledger.bucket("acme", 6000)
    bucket.available(1000)
    assert ledger.bucket("acme", 60) is bucket
    assert bucket.allowance == 60 and bucket.available(60) == 60
    clock.advance(60)
    assert ledger.lease("acme", 60, 1e9)[0] == 60


def test_two_replicas_share_one_rate_and_overspend_at_most_one_chunk_each(db):
    """Without the ledger each replica had its own bucket: two replicas spent twice the rate."""
    clock = FakeClock()
    per_minute, cost = 1200.0, 25.0
    replicas = [RateLedger(db, clock=clock, local_clock=clock) for _ in range(2)]
    spent = 0.0
    for _second in range(120):  # two minutes of searches, 4 per replica a second, each of `cost`
        for _ in range(4):
            for ledger in replicas:
                bucket = ledger.bucket("acme", per_minute)
                if bucket.available(cost) >= cost:
                    bucket.spend(cost)
                    spent += cost
        clock.advance(1.0)
    chunk = max(per_minute / CHUNKS_PER_MINUTE, cost)
    allowed = per_minute + 120 * per_minute / 60  # the full bucket plus two minutes of refill
    assert allowed * 0.9 <= spent <= allowed + len(replicas) * chunk


def test_two_rerank_stages_on_one_state_uri_lease_from_one_bucket(tmp_path, postgres_uri):
    from hybridsearch.engine.config import Settings
    from hybridsearch.engine.rerank_stage import RerankStage

    settings = Settings(data_dir=tmp_path, state_uri=postgres_uri, rerank={"enabled": True, "calibrate": False})
    one, two = RerankStage(settings), RerankStage(settings)
    one.buckets.bucket("acme", 100).available(100)
    assert two.buckets.bucket("acme", 100).available(100) < 1  # replica one holds it all


# ---------------------------------------------------------------------- the command line


def test_hsearch_keys_works_on_the_state_uri(tmp_path, postgres_uri, capsys):
    import yaml

    from hybridsearch.engine.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "state_uri": postgres_uri}))
    assert main(["keys", "create", "--tenant", "ops", "--role", "operator", "--config", str(config)]) == 0
    secret = capsys.readouterr().out.strip()
    store = ApiKeyStore(postgres_uri)  # what every replica reads
    record = store.verify(secret)
    assert record.tenant == "ops" and not (tmp_path / "data" / "state.sqlite3").exists()
    assert main(["keys", "revoke", record.key_id, "--config", str(config)]) == 0
    assert store.get(record.key_id).revoked
    store.close()
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/state"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "state_uri": down}))
    assert main(["keys", "list", "--config", str(config)]) == 1
    assert "state_uri" in capsys.readouterr().err
