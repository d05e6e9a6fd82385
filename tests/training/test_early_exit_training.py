"""Joint training of early exits (`train-reranker --exits 2,4,6`) on the tiny 6-layer BERT.

The run must leave a directory that the early-exit backend loads with its trained exits and
that the plain cross-encoder backends still load as they always did; without ``exits``
nothing changes (same cache key as before exits existed).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.rerank.tiny_layered import build_tiny_bert_reranker
from tests.tiny_models import WORDS

QUERY = "protein expression in cancer cells"
DOCS = [
    "protein expression cancer cells tumor",
    "water carbon oxygen pressure",
    "cells of the immune system",
    "蛋白质 表达 癌症",
]


def _examples(n: int = 16, seed: int = 5):
    from hybridsearch.training.cross_encoder import TrainingExample

    rng = random.Random(seed)
    docs = [" ".join(rng.sample(WORDS, 10)) for _ in range(n + 8)]
    return [
        TrainingExample(
            " ".join(rng.sample(docs[i].split(), 3)), docs[i], tuple(d for j, d in enumerate(docs) if j != i)[:6]
        )
        for i in range(n)
    ]


def _config(**overrides):
    from hybridsearch.training.cross_encoder import TrainConfig

    values = dict(
        epochs=2,
        negatives=3,
        batch_groups=4,
        lr=1e-3,
        head_lr=1e-3,
        max_length=48,
        seed=7,
        checkpoint_seconds=1e9,
        exits=(2, 4, 6),
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hybridsearch.training.cross_encoder import train_cross_encoder

    base = build_tiny_bert_reranker(tmp_path_factory.getbasetemp() / "tiny-bert-reranker")
    out = tmp_path_factory.mktemp("exit-train") / "reranker"
    return train_cross_encoder(base, _examples(), out, _config(), progress=False), base


def test_joint_training_saves_exit_heads_beside_the_model(trained):
    result, _ = trained
    model_dir = result.model_dir
    assert not result.cached
    spec = json.loads((model_dir / "early_exit.json").read_text())
    assert spec["exit_layers"] == [2, 4, 6] and spec["trained"] is True
    assert (model_dir / "exit_heads.safetensors").is_file() and (model_dir / "model.safetensors").is_file()
    info = result.info
    assert info["exits"] == [2, 4, 6] and info["key"]["exits"] == [2, 4, 6]
    assert all(np.isfinite(info["epoch_losses"]))
    assert not (model_dir.parent / "reranker.partial").exists()


def test_trained_directory_loads_in_the_early_exit_and_the_plain_backends(trained):
    from hybridsearch.rerank.backends import load_backend

    model_dir = trained[0].model_dir
    exit_backend = load_backend("early-exit", "exit", str(model_dir), max_length=48, batch_size=4)
    assert exit_backend.exit_layers == [2, 4, 6]
    pairs = exit_backend.encode(QUERY, DOCS)
    layers = {layer: exit_backend.score_to(pairs, layer).raw for layer in (2, 4, 6)}
    assert all(np.isfinite(v).all() for v in layers.values())
    full = {}
    for kind in ("cross-encoder", "flag"):
        backend = load_backend(kind, kind, str(model_dir), max_length=48, batch_size=4)
        full[kind] = backend.score(QUERY, DOCS).raw
        backend.close()
    np.testing.assert_allclose(layers[6], full["cross-encoder"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(full["flag"], full["cross-encoder"], atol=1e-4, rtol=0)
    # The heads were trained: they are no longer copies of the model's own head.
    from hybridsearch.rerank.early_exit import EarlyExitCrossEncoder

    model = EarlyExitCrossEncoder.from_pretrained(model_dir)
    head = model.heads["2"]
    assert not np.allclose(head.dense.weight.detach().numpy(), model.model.bert.pooler.dense.weight.detach().numpy())


def test_a_second_run_is_a_cache_hit_and_exits_are_part_of_the_key(trained, tmp_path):
    from hybridsearch.training.cross_encoder import train_cross_encoder

    result, base = trained
    again = train_cross_encoder(base, _examples(), result.model_dir, _config(), progress=False)
    assert again.cached
    # An early-exit run's key differs from a plain one's; a plain config's key has no "exits" at all.
    assert _config(exits=()).key() != _config().key()
    assert "exits" not in _config(exits=()).key()


def test_exits_the_model_does_not_have_are_refused(trained, tmp_path):
    from hybridsearch.training.cross_encoder import TrainConfig, train_cross_encoder

    _, base = trained
    with pytest.raises(ValueError, match=r"exit layers must be in 1\.\.6"):
        train_cross_encoder(base, _examples(4), tmp_path / "bad", _config(exits=(2, 9), epochs=1), progress=False)
    with pytest.raises(ValueError, match="exits must be layer numbers >= 1"):
        TrainConfig(exits=(0, 2))


def test_train_reranker_takes_exits_and_keeps_the_recipe_without_them():
    from hybridsearch.engine.cli import build_parser, train_config_from_args
    from hybridsearch.training.cross_encoder import RECIPE

    def parse(*options):
        return build_parser().parse_args(["train-reranker", "--beir", "unused", *options])

    assert train_config_from_args(parse()).key() == RECIPE.key() and train_config_from_args(parse()).exits == ()
    assert train_config_from_args(parse("--exits", "4,2,6")).exits == (2, 4, 6)
    with pytest.raises(SystemExit):
        parse("--exits", "two")
