"""Model lookup never downloads: every miss fails fast with a message naming the model and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from hybridsearch.engine.config import ProfileConfig, Settings
from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model
from hybridsearch.engine.encoders.registry import ProfileRegistry
from hybridsearch.engine.errors import ServiceError
from tests.conftest import TINY_PROFILE, status_of

REPO = Path(__file__).resolve().parents[2]
PURPOSE = "profile 'p'"
SETTING = "profiles.p.model"


def not_found(spec: str) -> str:
    with pytest.raises(ModelNotFound) as info:
        resolve_model(spec, PURPOSE, SETTING)
    return str(info.value)


# ---------------------------------------------------------------- local directories


def test_an_existing_directory_resolves_to_itself(tmp_path):
    assert resolve_model(str(tmp_path), PURPOSE, SETTING) == str(tmp_path)


def test_a_missing_local_directory_names_the_path_the_setting_and_how_to_provide_the_model(tmp_path):
    missing = tmp_path / "models" / "bge-m3"
    message = not_found(str(missing))
    assert message.startswith(PURPOSE + ":")
    assert str(missing) in message and "not found" in message
    assert "does not download" in message and "huggingface-cli download" in message
    assert "`profiles.p.model`" in message and "HSEARCH_PROFILES__P__MODEL" in message  # which setting to change
    # a path is not looked up in the hub cache
    assert "hub id" not in message


@pytest.mark.parametrize("spec", ["./models/m3", "~/no-such-model-dir", "a/b/c", "plainname"])
def test_specs_that_look_like_paths_are_only_tried_as_directories(spec):
    message = not_found(spec)
    assert repr(spec) in message and "hub id" not in message


def test_a_file_where_a_model_directory_is_expected_is_reported_as_a_file(tmp_path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    message = not_found(str(file))
    assert str(file) in message and "is a file" in message


# ---------------------------------------------------------------- hub ids


def test_an_uncached_hub_id_fails_fast_offline_naming_the_id_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    started = time.monotonic()
    message = not_found("no-such-org/no-such-model")
    assert time.monotonic() - started < 5
    assert "'no-such-org/no-such-model'" in message and "hub id" in message and "cache" in message
    assert "huggingface-cli download no-such-org/no-such-model" in message
    assert "set `profiles.p.model`" in message


def _run_resolve(specs: list[str], hub_cache: Path) -> list[str]:
    """resolve_model in a fresh interpreter, so huggingface_hub reads this cache location at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub_cache), PYTHONPATH=str(REPO))
    code = textwrap.dedent(
        """
        import sys
        from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model
        for spec in sys.argv[1:]:
            try:
                print("FOUND", resolve_model(spec, "profile x", "profiles.x.model"))
            except ModelNotFound as exc:
                print("MISSING", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *specs], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_hub_id_already_in_the_local_cache_resolves_to_its_snapshot_without_network(tmp_path):
    hub = tmp_path / "hub"
    repo = hub / "models--some-org--tiny-model"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    started = time.monotonic()
    found, missing = _run_resolve(["some-org/tiny-model", "some-org/other-model"], hub)
    assert time.monotonic() - started < 30
    assert found == f"FOUND {snapshot}"
    assert missing.startswith("MISSING") and "'some-org/other-model'" in missing and str(hub) in missing


# ---------------------------------------------------------------- package: specs


@pytest.fixture
def packages(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path for throwaway model packages."""
    root = tmp_path / "pkgs"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_a_package_spec_resolves_to_the_packages_model_directory(packages, tmp_path):
    model_dir = tmp_path / "shipped-model"
    model_dir.mkdir()
    (packages / "hs_test_model_ok.py").write_text(f"def get_model_path():\n    return {str(model_dir)!r}\n")
    assert resolve_model("package:hs_test_model_ok", PURPOSE, SETTING) == str(model_dir)


def test_a_package_spec_for_a_missing_module_names_the_package_and_how_to_install():
    message = not_found("package:hs_no_such_model_package")
    assert message.startswith(PURPOSE + ":")
    assert "'hs_no_such_model_package'" in message and "not installed" in message
    assert "pip install" in message and "local directory" in message


def test_a_package_without_get_model_path_is_a_model_not_found_naming_the_package(packages):
    (packages / "hs_test_not_a_model.py").write_text("VALUE = 1\n")
    message = not_found("package:hs_test_not_a_model")
    assert "'hs_test_not_a_model'" in message and "get_model_path" in message


def test_a_package_pointing_at_a_missing_directory_is_a_model_not_found(packages, tmp_path):
    (packages / "hs_test_model_gone.py").write_text(f"def get_model_path():\n    return {str(tmp_path / 'gone')!r}\n")
    message = not_found("package:hs_test_model_gone")
    assert "'hs_test_model_gone'" in message and str(tmp_path / "gone") in message


def test_a_package_spec_with_no_module_name_is_a_model_not_found():
    assert "names no package" in not_found("package:")


# ---------------------------------------------------------------- profile registry


def _registry(tmp_path, **profiles) -> ProfileRegistry:
    return ProfileRegistry(Settings(data_dir=tmp_path, profiles=profiles, default_profile=next(iter(profiles))))


def test_the_registry_turns_a_missing_model_into_failed_precondition(tmp_path):
    missing = tmp_path / "no-model"
    registry = _registry(tmp_path, gone=ProfileConfig(kind="bge-m3", model=str(missing)))
    with pytest.raises(ServiceError) as info:
        registry.get("gone")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "profile 'gone'" in info.value.message and str(missing) in info.value.message


def test_the_registry_turns_a_broken_package_spec_into_failed_precondition(tmp_path, packages):
    (packages / "hs_test_registry_pkg.py").write_text("X = 1\n")
    registry = _registry(tmp_path, pkg=ProfileConfig(kind="dense-bm25", model="package:hs_test_registry_pkg"))
    with pytest.raises(ServiceError) as info:
        registry.get("pkg")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and "hs_test_registry_pkg" in info.value.message


def test_the_registry_rejects_an_unknown_profile_listing_the_configured_ones(tmp_path):
    registry = _registry(
        tmp_path, one=ProfileConfig(kind="bge-m3", model="/m1"), two=ProfileConfig(kind="bge-m3", model="/m2")
    )
    with pytest.raises(ServiceError) as info:
        registry.get("three")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.message.startswith("profile:")
        and "'three'" in info.value.message
        and "one, two" in info.value.message
    )


def test_create_collection_with_a_profile_whose_model_is_missing_is_failed_precondition(
    start_server, tiny_m3_dir, tmp_path
):
    missing = tmp_path / "missing-model-dir"
    running = start_server(
        profiles={
            TINY_PROFILE: ProfileConfig(kind="bge-m3", model=str(tiny_m3_dir), max_length=128),
            "gone": ProfileConfig(kind="bge-m3", model=str(missing)),
            "gone-pkg": ProfileConfig(kind="dense-bm25", model="package:hs_no_such_model_package"),
        },
        rerank={"enabled": False},
    )
    client = running.client("acme")
    code, details = status_of(lambda: client.create_collection("needs_model", "gone"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "profile 'gone'" in details and str(missing) in details and "huggingface-cli download" in details
    code, details = status_of(lambda: client.create_collection("needs_pkg", "gone-pkg"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "hs_no_such_model_package" in details
    # nothing was created, and the server keeps serving collections whose model is present
    assert {c.name for c in client.list_collections()} == set()
    assert client.create_collection("fine", TINY_PROFILE).dimension == 32


# ---------------------------------------------------------------- the rerank backend's setting


def settings_with_backend(data_dir: Path, name: str, kind: str, model: Path) -> Settings:
    """Settings whose default rerank backend ``name`` points at ``model``."""
    return Settings(
        data_dir=data_dir, rerank={"default_backend": name, "backends": {name: {"kind": kind, "model": str(model)}}}
    )


def test_a_missing_reranker_names_the_rerank_backend_setting_not_a_profile(tmp_path, caplog):
    """The first-hour report: the warning said HSEARCH_PROFILES__<NAME>__MODEL for a reranker."""
    from hybridsearch.engine.rerank_stage import Reranker

    settings = settings_with_backend(tmp_path, "ce", "cross-encoder", tmp_path / "no-reranker")
    reranker = Reranker("ce", settings.rerank.backends["ce"], settings)
    with caplog.at_level("WARNING"):
        reranker.load()
    assert reranker.backend is None
    for text in (reranker.load_error, caplog.text):
        assert "rerank backend 'ce'" in text
        assert "`rerank.backends.ce.model`" in text and "HSEARCH_RERANK__BACKENDS__CE__MODEL" in text
        assert "PROFILES" not in text and "profile's" not in text


def test_the_variable_named_for_a_hyphenated_backend_is_one_that_sets_it(tmp_path, monkeypatch):
    """HSEARCH_RERANK__BACKENDS__BGE-RERANKER__MODEL, as the message writes it, repoints the backend."""
    from hybridsearch.engine.config import load_settings

    settings = settings_with_backend(tmp_path, "bge-reranker", "flag", tmp_path / "none")
    with pytest.raises(ModelNotFound) as info:
        resolve_model(str(tmp_path / "none"), "rerank backend 'bge-reranker'", "rerank.backends.bge-reranker.model")
    variable = next(w for w in str(info.value).split() if w.startswith("HSEARCH_"))
    assert variable == "HSEARCH_RERANK__BACKENDS__BGE-RERANKER__MODEL" and "set with `env`" in str(info.value)
    config = tmp_path / "c.yaml"
    config.write_text(f"rerank: {settings.rerank.model_dump_json()}\n")
    monkeypatch.setenv(variable, "/models/elsewhere")
    assert load_settings(config).rerank.backends["bge-reranker"].model == "/models/elsewhere"
