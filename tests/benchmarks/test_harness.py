"""The benchmark harness: the data path, percentiles, waiting for a quiet machine, the
reranker choice and the service in a child process."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness


def test_the_data_path_follows_the_environment_variable(tmp_path):
    probe = "from benchmarks import harness, corpus; print(harness.DEFAULT_DATA); print(corpus.DEFAULT_DATA); print(harness.dataset('cmrc2018'))"
    env = {"HSEARCH_BENCH_DATA": str(tmp_path / "scifact-copy"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=harness.REPO
    ).stdout.split()
    assert out == [str(tmp_path / "scifact-copy")] * 2 + [str(tmp_path / "cmrc2018")]


def test_the_default_data_path_is_scifact_beside_the_repository(monkeypatch):
    monkeypatch.delenv(harness.DATA_ENV, raising=False)
    assert harness.default_data() == harness.REPO.parent / "shared" / "data" / "scifact"
    assert harness.dataset("scifact") == harness.DEFAULT_DATA


def test_stats_leave_out_missing_values_and_name_the_median():
    s = harness.stats([1.0, 2.0, None, float("nan"), 3.0, 4.0])
    assert s["n"] == 4 and s["p50"] == 2.5 and s["mean"] == 2.5 and (s["min"], s["max"]) == (1.0, 4.0)
    assert s["p95"] == pytest.approx(3.85) and "p99" in s
    other = harness.stats([5.0, 1.0], median="median", percentiles=(5,))
    assert set(other) == {"n", "median", "p5", "mean", "min", "max"}
    assert harness.stats([None, float("inf")]) == {"n": 0}
    assert math.isnan(harness.percentile([], 50)) and harness.percentile([1, 3], 50) == 2.0


def test_waiting_for_a_quiet_machine_stops_at_once_or_when_the_time_is_up():
    quiet = harness.wait_for_idle(float("inf"), 60)
    assert quiet.idle and quiet.waited_s < 1 and len(quiet.polls) == 1
    told: list[str] = []
    busy = harness.wait_for_idle(-1.0, 0.2, poll_s=0.05, log=told.append)
    assert not busy.idle and busy.waited_s >= 0.2 and len(busy.polls) >= 2
    assert "running anyway" in told[-1]
    assert set(busy.as_dict()) == {"threshold", "before", "after", "waited_s", "idle", "polls"}
    assert harness.waited_text(None) == "" and "(quiet: False)" in harness.waited_text(busy.as_dict())
    assert "(quiet: True)" in harness.waited_text({"waited_s": 3, "quiet": True})  # results written before the harness


def test_reranker_choice_names_what_it_is(tmp_path, tiny_reranker_dir):
    none = harness.choose_reranker("none", tmp_path, tmp_path / "untrained")
    assert none.path is None and none.rerank_config() == {"enabled": False}
    given = harness.choose_reranker(str(tiny_reranker_dir), tmp_path, tmp_path / "untrained")
    assert given.which == "given" and not given.trained and given.note == given.description
    config = given.rerank_config()
    assert config["backends"]["ce"]["model"] == str(tiny_reranker_dir) and config["default_backend"] == "ce"
    identity = given.identity()
    assert (
        set(identity) == {"kind", "max_length", "trained", "weights", "fusion_weight"} and identity["trained"] is False
    )
    assert given.as_dict()["note"] == given.description
    with pytest.raises(SystemExit, match="not a model directory"):
        harness.choose_reranker(str(tmp_path), tmp_path, tmp_path / "untrained")


def test_a_trained_reranker_is_copied_once_without_its_exports(tmp_path, tiny_reranker_dir):
    import shutil

    source = tmp_path / "trained"
    shutil.copytree(tiny_reranker_dir, source)
    assert harness.copy_trained_reranker(tmp_path / "copies", source) is None  # no training_info.json
    (source / "training_info.json").write_text('{"backend_kind": "flag", "max_length": 128}')
    (source / "onnx").mkdir(exist_ok=True)  # the ONNX backend tests may have exported into the shared tiny model
    copy, info = harness.copy_trained_reranker(tmp_path / "copies", source)
    assert info["backend_kind"] == "flag" and harness.backend_kind(info) == "flag"
    assert harness.complete_model(copy, need_training_info=True) and not (copy / "onnx").exists()
    assert harness.copy_trained_reranker(tmp_path / "copies", source)[0] == copy


def test_the_service_runs_in_a_child_process_until_stopped(tmp_path, tiny_m3_dir):
    from tests.conftest import make_settings

    port = harness.free_port()
    values = make_settings(
        tmp_path / "data", tiny_m3_dir, server={"host": "127.0.0.1", "port": port, "grace_s": 1}
    ).model_dump(mode="json")
    config = harness.write_config(tmp_path / "config.yaml", values)
    server = harness.ServerProcess(config, tmp_path / "server.log", f"127.0.0.1:{port}")
    try:
        assert server.start(timeout_s=300) > 0
        assert server.alive() and server.health() == "SERVING"
        assert server.rss_kib()["server"] > 0
        assert not harness.wait_serving(server.target, "hybridsearch.v1.Rerank", timeout_s=1)  # rerank disabled
    finally:
        code = server.stop()
    assert code == 0 and not server.alive()
    assert "serve --config" in server.log_text()


def test_a_service_that_cannot_start_is_reported_with_its_log(tmp_path):
    config = harness.write_config(tmp_path / "config.yaml", {"no_such_setting": 1})
    server = harness.ServerProcess(config, tmp_path / "server.log", f"127.0.0.1:{harness.free_port()}")
    with pytest.raises(harness.ServerStartError) as caught:
        server.start(timeout_s=120)
    assert caught.value.returncode not in (None, 0) and not caught.value.timed_out
    assert any("no_such_setting" in line for line in caught.value.tail) or "no_such_setting" in server.log_text()


def test_no_benchmark_imports_the_tests_but_the_fuzz_server_settings():
    """tests/ may import benchmarks/, not the other way round; the one exception is the long
    fuzz run serving the test suite's tiny models and settings (benchmarks/fuzz_api.py)."""
    bench = Path(harness.REPO / "benchmarks")
    offenders = []
    for path in sorted(bench.glob("*.py")):
        for line in path.read_text().splitlines():
            if line.strip().startswith(("from tests", "import tests")) and path.name != "fuzz_api.py":
                offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []
