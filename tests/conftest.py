"""Shared fixtures: tiny real-format models built at test time, a real server on Milvus Lite."""

from __future__ import annotations

import os

# Before anything imports transformers / huggingface_hub: never reach a hub, keep
# torch to the two cores CI has.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.tiny_models import build_tiny_bge_m3, build_tiny_reranker

TINY_PROFILE = "tiny-m3"
TINY_BM25_PROFILE = "tiny-bm25"


@pytest.fixture(scope="session")
def tiny_m3_dir(tmp_path_factory) -> Path:
    return build_tiny_bge_m3(tmp_path_factory.getbasetemp() / "tiny-bge-m3")


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    return build_tiny_reranker(tmp_path_factory.getbasetemp() / "tiny-reranker")


def make_settings(data_dir: Path, tiny_m3_dir: Path, tiny_reranker_dir: Path | None = None, **overrides):
    from hybridsearch.engine.config import ProfileConfig, Settings

    rerank = {"enabled": False}
    if tiny_reranker_dir is not None:
        rerank = {
            "default_backend": "tiny",
            "backends": {
                "tiny": {
                    "kind": "flag",
                    "model": str(tiny_reranker_dir),
                    "max_length": 128,
                    "batch_size": 16,
                    "price_per_million_tokens": 0.05,
                }
            },
            "default_budget": {"max_depth": 50, "default_mode": "off"},
            "chunk_pairs": 8,
        }

    values = dict(
        data_dir=data_dir,
        profiles={
            TINY_PROFILE: ProfileConfig(kind="bge-m3", model=str(tiny_m3_dir), max_length=128),
            # The tiny XLM-R directory loads in sentence-transformers too (mean pooling).
            TINY_BM25_PROFILE: ProfileConfig(kind="dense-bm25", model=str(tiny_m3_dir), max_length=128),
        },
        default_profile=TINY_PROFILE,
        server={"host": "127.0.0.1", "port": 0, "grace_s": 2, "max_workers": 16},
        limits={
            "max_top_k": 100,
            "max_depth": 200,
            "default_depth": 50,
            "max_batch_docs": 100,
            "max_query_chars": 500,
            "max_text_bytes": 4000,
        },
        search_threads=4,
        rerank=rerank,
        # The API tests name their tenant with x-tenant; tests/api/test_auth.py covers API keys.
        auth_mode="dev_header",
    )
    values.update(overrides)
    return Settings(**values)


class RunningServer:
    def __init__(self, settings):
        from hybridsearch.engine.server import Server

        self.settings = settings
        self.server = Server(settings)
        self.port = self.server.start()
        self.target = f"127.0.0.1:{self.port}"
        self._channels: list[grpc.Channel] = []

    def client(self, tenant: str | None = "acme", **kwargs):
        from hybridsearch.engine.client import HybridSearchClient

        client = HybridSearchClient(self.target, tenant=tenant, **kwargs)
        self._channels.append(client.channel)
        return client

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.target)
        self._channels.append(channel)
        return channel

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self.server.stop(grace=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir) -> Iterator[RunningServer]:
    """One server per test module, on its own Milvus Lite directory, with the tiny reranker."""
    running = RunningServer(make_settings(tmp_path_factory.mktemp("data"), tiny_m3_dir, tiny_reranker_dir))
    yield running
    running.stop()


@pytest.fixture
def start_server(tmp_path, tiny_m3_dir, tiny_reranker_dir) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with custom settings inside one test; all are stopped afterwards."""
    started: list[RunningServer] = []

    def start(data_dir: Path | None = None, **overrides) -> RunningServer:
        running = RunningServer(
            make_settings(data_dir or tmp_path / "data", tiny_m3_dir, tiny_reranker_dir, **overrides)
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def status_of(call: Callable) -> tuple[grpc.StatusCode, str]:
    """Run a call that must fail; its status code and details."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL 16 for the session (pgserver: starts in about a second, stops at exit)."""
    import warnings

    import pgserver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set (CI)
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@contextlib.contextmanager
def postgres_database(server) -> Iterator[str]:
    """A fresh database on ``server``: its URI; dropped afterwards, connections and all."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.get_uri(name)
    finally:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def postgres_uri(postgres) -> Iterator[str]:
    """The URI of an empty database of its own for one test."""
    with postgres_database(postgres) as uri:
        yield uri


class FakeClock:
    """A clock the test moves by hand (token buckets, circuit breaker, admission, ledger)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
