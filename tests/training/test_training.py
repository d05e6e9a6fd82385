"""Reranker fine-tuning at CI size: a tiny BEIR folder, the tiny XLM-R models, Milvus Lite.

Mining runs the real SearchService (tiny-bm25 profile) and training the real loop; the
trained directory must load in every rerank backend, a second run must be a cache hit,
and interrupted mining / ingestion / training must resume from their caches.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_BM25_PROFILE, make_settings
from tests.tiny_models import WORDS

TRAIN_CONFIG = dict(
    epochs=4, negatives=3, batch_groups=4, lr=1e-3, head_lr=1e-3, max_length=64, seed=7, checkpoint_seconds=1e9
)
N_DOCS, N_TRAIN, N_TEST = 40, 24, 8


def write_tiny_beir(root: Path, seed: int = 3) -> Path:
    """Documents of 12 random words; a query is 3 words of its one relevant document."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs = [
        {"_id": f"doc{i}", "title": " ".join(rng.sample(WORDS, 2)), "text": " ".join(rng.sample(WORDS, 12))}
        for i in range(N_DOCS)
    ]
    queries, qrels = [], {"train": [], "test": []}
    for i in range(N_TRAIN + N_TEST):
        doc = docs[i]
        queries.append({"_id": f"q{i}", "text": " ".join(rng.sample(doc["text"].split(), 3))})
        qrels["train" if i < N_TRAIN else "test"].append((f"q{i}", doc["_id"], 1))
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
        )
    return root


def without_dropout(src: Path, dst: Path) -> Path:
    """The tiny reranker with dropout off: at hidden size 32, dropout 0.1 drowns what 24 steps can learn."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(str(dst))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(dst))
    return dst


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    root = tmp_path_factory.mktemp("train")
    beir = write_tiny_beir(root / "tinybeir")
    settings = make_settings(root / "unused", tiny_m3_dir)
    base = without_dropout(tiny_reranker_dir, root / "tiny-reranker-nodrop")
    return {"root": root, "beir": beir, "cache": root / "cache", "settings": settings, "base": base}


def run_pipeline(ws, **overrides):
    from hybridsearch.training.cross_encoder import TrainConfig
    from hybridsearch.training.hard_negatives import train_from_beir

    kwargs = dict(
        split="train",
        base=str(ws["base"]),
        cache_dir=ws["cache"],
        settings=ws["settings"],
        profile=TINY_BM25_PROFILE,
        mine_depth=10,
        config=TrainConfig(**TRAIN_CONFIG),
        progress=False,
    )
    kwargs.update(overrides)
    return train_from_beir(ws["beir"], **kwargs)


@pytest.fixture(scope="module")
def trained(workspace):
    return run_pipeline(workspace)


def test_pipeline_trains_and_records_what_it_did(trained, workspace):
    assert not trained.cached
    assert trained.model_dir == workspace["cache"] / "reranker"
    assert trained.examples == N_TRAIN and trained.queries == N_TRAIN
    info = json.loads((trained.model_dir / "training_info.json").read_text())
    assert info["complete"] and info["seed"] == 7 and info["epochs"] == 4 and info["loss"] == "listwise"
    assert info["pairs_per_epoch"] == N_TRAIN * 4 and info["base_model"] == str(workspace["base"])
    assert len(info["data_hash"]) == 16 and info["train_seconds"] > 0
    # The loss goes down: last epoch below the first, end of the curve below its start.
    assert info["epoch_losses"][-1] < info["epoch_losses"][0]
    assert info["loss_curve"][-1] < info["loss_curve"][0]
    # Ranked lists cached: one line per train query after the header, no relevant doc among the negatives.
    lines = trained.ranked_path.read_text().splitlines()
    assert json.loads(lines[0])["meta"]["split"] == "train" and len(lines) == 1 + N_TRAIN
    assert not (workspace["cache"] / "reranker.partial").exists()


def test_trained_dir_loads_in_every_backend_and_they_agree(trained):
    from hybridsearch.rerank.backends import load_backend

    query = "protein expression in cancer cells"
    docs = ["protein expression cancer cells tumor", "water carbon oxygen pressure", "cells of the immune system"]
    scores = {}
    for kind in ("flag", "cross-encoder", "onnx"):
        backend = load_backend(kind, kind, str(trained.model_dir), max_length=64, batch_size=4)
        scores[kind] = backend.score(query, docs).raw
        if kind == "flag":
            # FlagReranker's own path sends token_type_ids; the trained model ignores them.
            np.testing.assert_allclose(backend.compute_score_plain(query, docs), scores[kind], rtol=1e-4, atol=1e-4)
        backend.close()
    assert np.ptp(scores["flag"]) > 0
    np.testing.assert_allclose(scores["cross-encoder"], scores["flag"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores["onnx"], scores["flag"], rtol=1e-3, atol=1e-3)


def test_second_run_is_a_cache_hit(trained, workspace):
    before = (trained.model_dir / "model.safetensors").stat().st_mtime_ns
    again = run_pipeline(workspace)
    assert again.cached and again.mining_seconds == 0 and again.ingest_seconds == 0
    assert (trained.model_dir / "model.safetensors").stat().st_mtime_ns == before
    # Another seed is another model: not a cache hit (trained to a separate directory here).
    from hybridsearch.training.cross_encoder import TrainConfig, is_complete, read_info

    assert not is_complete(trained.model_dir, {**read_info(trained.model_dir)["key"], "seed": 8})
    assert TrainConfig(**TRAIN_CONFIG).key() == {
        k: v for k, v in read_info(trained.model_dir)["key"].items() if k in TrainConfig(**TRAIN_CONFIG).key()
    }


def test_interrupted_mining_and_ingest_resume(trained, workspace):
    from hybridsearch.training.beir import load_beir
    from hybridsearch.training.hard_negatives import open_index, rank_queries, read_ranked

    beir = load_beir(workspace["beir"], ("train",))
    path = trained.ranked_path
    full = path.read_text().splitlines()
    meta = json.loads(full[0])["meta"]
    expected = read_ranked(path, meta)
    # A run that died after 5 queries, in the middle of writing the 6th line.
    path.write_text("\n".join(full[:6]) + "\n" + full[6][: len(full[6]) // 2])
    assert len(read_ranked(path, meta)) == 5 and path.read_text().endswith("\n")

    index = open_index(
        beir, workspace["cache"], settings=workspace["settings"], profile=TINY_BM25_PROFILE, progress=False
    )
    try:
        assert index.ingested == 0  # the collection is complete
        resumed = rank_queries(index, beir.split_queries("train"), path, meta, depth=10, progress=False)
        assert resumed.searched == N_TRAIN - 5
        assert resumed.ranked == expected
        assert len(path.read_text().splitlines()) == 1 + N_TRAIN
        # Ingestion killed part-way: three documents are missing; only they are written again.
        index.service.delete(index.tenant, index.collection, ["doc1", "doc5", "doc9"])
    finally:
        index.close()
    index = open_index(
        beir, workspace["cache"], settings=workspace["settings"], profile=TINY_BM25_PROFILE, progress=False
    )
    try:
        assert index.ingested == 3
        assert index.service.describe(index.collection, index.tenant)[1] == N_DOCS
    finally:
        index.close()
    # A file written for another setup is set aside, not trusted.
    assert read_ranked(path, {**meta, "depth": 11}) == {} and not path.exists()
    assert path.with_suffix(".jsonl.stale").exists()
    path.with_suffix(".jsonl.stale").rename(path)


def test_interrupted_training_resumes_from_its_checkpoint(trained, workspace, tmp_path):
    from hybridsearch.training.beir import load_beir
    from hybridsearch.training.cross_encoder import TrainConfig, train_cross_encoder
    from hybridsearch.training.hard_negatives import hard_negatives, read_ranked, training_examples

    beir = load_beir(workspace["beir"], ("train",))
    meta = json.loads(trained.ranked_path.read_text().splitlines()[0])["meta"]
    examples = training_examples(beir, "train", hard_negatives(beir, "train", read_ranked(trained.ranked_path, meta)))
    config = TrainConfig(**{**TRAIN_CONFIG, "epochs": 2, "checkpoint_seconds": 0.0})

    class Stop(Exception):
        pass

    def stop_at_5(step, loss):
        if step == 5:
            raise Stop

    out = tmp_path / "model"
    with pytest.raises(Stop):
        train_cross_encoder(workspace["base"], examples, out, config, on_step=stop_at_5, progress=False)
    assert (tmp_path / "model.partial" / "checkpoint.pt").exists() and not out.exists()
    steps = []
    resumed = train_cross_encoder(
        workspace["base"], examples, out, config, on_step=lambda s, _loss: steps.append(s), progress=False
    )
    assert steps[0] == 5 and steps[-1] == resumed.info["steps"]  # continued after the last checkpoint (step 4)
    straight = train_cross_encoder(workspace["base"], examples, tmp_path / "straight", config, progress=False)
    assert resumed.info["loss_curve"] == pytest.approx(straight.info["loss_curve"], rel=1e-4, abs=1e-5)


def test_head_learns_at_its_own_rate(workspace):
    """The fresh classifier (and BERT's pooler) get head_lr; the pretrained body keeps lr."""
    from transformers import AutoModelForSequenceClassification

    from hybridsearch.training.cross_encoder import TrainConfig, param_groups

    model = AutoModelForSequenceClassification.from_pretrained(str(workspace["base"]), num_labels=1)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, TrainConfig(lr=2e-5, head_lr=1e-3))
    assert sum(len(g["params"]) for g in groups) == len(names)
    for g in groups:
        for p in g["params"]:
            assert g["lr"] == (1e-3 if names[id(p)].startswith("classifier") or "pooler" in names[id(p)] else 2e-5), (
                names[id(p)]
            )
            assert (g["weight_decay"] == 0.0) == any(s in names[id(p)] for s in ("bias", "LayerNorm.weight"))
    assert any(g["head"] for g in groups) and any(not g["head"] for g in groups)
    assert {g["lr"] for g in param_groups(model, TrainConfig(lr=2e-5, head_lr=None))} == {2e-5}  # no head_lr: one rate


def test_bad_inputs(workspace, tmp_path):
    from hybridsearch.training.beir import BeirError
    from hybridsearch.training.cross_encoder import TrainConfig, TrainingExample, train_cross_encoder

    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="head_lr must be > 0"):
        TrainConfig(head_lr=0.0)
    with pytest.raises(ValueError, match="no training examples"):
        train_cross_encoder(workspace["base"], [], tmp_path / "m")
    with pytest.raises(ValueError, match="has no negatives"):
        train_cross_encoder(workspace["base"], [TrainingExample("q", "d", ())], tmp_path / "m")
    broken = write_tiny_beir(tmp_path / "broken")
    (broken / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(BeirError, match="train.tsv: the split is empty"):
        run_pipeline({**workspace, "beir": broken, "cache": tmp_path / "cache"})


def test_cli(trained, workspace, tmp_path, capsys):
    import yaml

    from hybridsearch.engine.cli import main

    config = tmp_path / "hsearch.yaml"
    profiles = {name: p.model_dump() for name, p in workspace["settings"].profiles.items()}
    config.write_text(yaml.safe_dump({"profiles": profiles, "default_profile": TINY_BM25_PROFILE}))
    common = [
        "train-reranker",
        "--base",
        str(workspace["base"]),
        "--cache-dir",
        str(workspace["cache"]),
        "--config",
        str(config),
        "--profile",
        TINY_BM25_PROFILE,
        "--mine-depth",
        "10",
        "--epochs",
        "4",
        "--negatives",
        "3",
        "--batch-groups",
        "4",
        "--lr",
        "1e-3",
        "--head-lr",
        "1e-3",
        "--max-length",
        "64",
        "--seed",
        "7",
        "--quiet",
    ]
    assert main(common + ["--beir", str(workspace["beir"]), "--eval-split", "test", "--eval-depth", "10"]) == 0
    captured = capsys.readouterr()
    assert "up to date (cached)" in captured.err
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["queries"] == N_TEST and 0 <= result["ndcg@10_rrf"] <= 1 and 0 <= result["ndcg@10_reranked"] <= 1

    missing = tmp_path / "nothing-here"
    missing.mkdir()
    assert main(common + ["--beir", str(missing)]) == 2
    assert f"{missing / 'corpus.jsonl'}: missing" in capsys.readouterr().err


def test_several_collections_train_one_reranker(workspace, tmp_path, capsys):
    """Two BEIR folders (two languages, in production), each mined in its own cache with its own
    profile; one model trained on both, and no test query of either in the training groups."""
    from hybridsearch.engine.cli import main
    from hybridsearch.training.cross_encoder import TrainConfig
    from hybridsearch.training.hard_negatives import TrainingCollection, train_from_collections

    other = write_tiny_beir(tmp_path / "tinybeir2", seed=11)
    seen = []

    from hybridsearch.training import cross_encoder

    real = cross_encoder.train_cross_encoder

    def recording(base_dir, examples, out_dir, config, **kwargs):
        seen.extend(examples)
        return real(base_dir, examples, out_dir, config, **kwargs)

    collections = [
        TrainingCollection(workspace["beir"], profile=TINY_BM25_PROFILE, cache_dir=tmp_path / "c1"),
        TrainingCollection(other, profile=TINY_BM25_PROFILE, cache_dir=tmp_path / "c2"),
    ]
    import unittest.mock

    with unittest.mock.patch.object(cross_encoder, "train_cross_encoder", recording):
        report = train_from_collections(
            collections,
            out=tmp_path / "joint",
            base=str(workspace["base"]),
            settings=workspace["settings"],
            mine_depth=10,
            config=TrainConfig(**{**TRAIN_CONFIG, "epochs": 1}),
            progress=False,
        )
    assert report.examples == 2 * N_TRAIN and (tmp_path / "joint" / "training_info.json").is_file()
    assert report.sources == {"tinybeir": {"judged": N_TRAIN}, "tinybeir2": {"judged": N_TRAIN}}
    assert any((tmp_path / "c1").glob("ranked-train-*.jsonl")) and any((tmp_path / "c2").glob("ranked-train-*.jsonl"))
    test_queries = set()
    for folder in (workspace["beir"], other):
        queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
        rows = (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]
        test_queries |= {queries[row.split("\t")[0]] for row in rows}
    assert len(seen) == 2 * N_TRAIN and not {ex.query for ex in seen} & test_queries

    # The command: several --beir need --out, and one --profile for all or one each.
    args = ["train-reranker", "--beir", str(workspace["beir"]), "--beir", str(other), "--quiet"]
    assert main(args) == 2
    assert "--out: a reranker trained on several --beir folders" in capsys.readouterr().err
    three = ["--profile", "a", "--profile", "b", "--profile", "c"]
    assert main([*args, "--out", str(tmp_path / "x"), *three]) == 2
    assert "--profile: give one profile for every --beir or one per --beir; got 3 for 2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a collection is named twice"):
        train_from_collections(
            [TrainingCollection(workspace["beir"]), TrainingCollection(workspace["beir"])], out=tmp_path / "y"
        )


def test_frozen_word_embeddings_stay_as_the_base_has_them(workspace, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from hybridsearch.training.cross_encoder import RECIPE, TrainConfig, TrainingExample, train_cross_encoder

    assert "freeze_embeddings" not in RECIPE.key()  # earlier runs' cache keys stand
    examples = [
        TrainingExample(f"{w} protein", f"{w} protein cells", ("river stone", "cold water")) for w in WORDS[:16]
    ]
    config = TrainConfig(**{**TRAIN_CONFIG, "epochs": 1, "freeze_embeddings": True})
    assert config.key()["freeze_embeddings"] is True
    result = train_cross_encoder(workspace["base"], examples, tmp_path / "frozen", config, progress=False)
    base = AutoModelForSequenceClassification.from_pretrained(str(workspace["base"]), num_labels=1)
    trained = AutoModelForSequenceClassification.from_pretrained(str(result.model_dir), num_labels=1)
    assert torch.equal(base.get_input_embeddings().weight, trained.get_input_embeddings().weight)
    # The body did learn: the first layer's query weights moved.
    name = next(n for n, _ in base.named_parameters() if "layer.0" in n and "query.weight" in n)
    assert not torch.equal(dict(base.named_parameters())[name], dict(trained.named_parameters())[name])


def test_train_reranker_defaults_are_the_measured_recipe():
    """One source of training defaults, RECIPE (training/cross_encoder.py). What matters is what
    `hsearch train-reranker` *trains with*, so the parser's defaults go through the command's own
    args -> TrainConfig step: a default written into the parser (or a field the command leaves
    out) fails here as soon as RECIPE changes. The recipe's values are pinned because they were
    measured: changing one is a decision to re-measure, not a refactor."""
    import dataclasses
    import inspect

    from hybridsearch.engine.cli import TRAIN_OPTIONS, build_parser, train_config_from_args
    from hybridsearch.training.cross_encoder import RECIPE, TrainConfig, train_cross_encoder

    def parse(*options):
        return build_parser().parse_args(["train-reranker", "--beir", "unused", *options])

    assert train_config_from_args(parse()).key() == RECIPE.key() == TrainConfig().key()
    # Every setting that changes the weights is an option of the command or fixed by the recipe
    # on purpose; a new TrainConfig field fails here until someone decides which.
    assert set(RECIPE.key()) == set(TRAIN_OPTIONS) | {"warmup_ratio", "weight_decay", "max_grad_norm"}
    # Options reach the config (a parser default that nothing reads would pass the first check).
    changed = train_config_from_args(
        parse(
            "--epochs",
            "5",
            "--negatives",
            "2",
            "--batch-groups",
            "4",
            "--lr",
            "1e-4",
            "--head-lr",
            "0.01",
            "--max-length",
            "64",
            "--loss",
            "bce",
            "--seed",
            "1",
            "--bf16",
            "--threads",
            "3",
        )
    )
    assert (
        changed.key()
        == dataclasses.replace(
            RECIPE,
            epochs=5,
            negatives=2,
            batch_groups=4,
            lr=1e-4,
            head_lr=0.01,
            max_length=64,
            loss="bce",
            seed=1,
            bf16=True,
        ).key()
    )
    assert changed.threads == 3
    # The library's default is the recipe too.
    assert inspect.signature(train_cross_encoder).parameters["config"].default is RECIPE
    assert RECIPE.key() == {
        "epochs": 2,
        "negatives": 3,
        "batch_groups": 8,
        "lr": 5e-5,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "max_length": 192,
        "loss": "listwise",
        "seed": 13,
        "bf16": False,
        "head_lr": 1e-3,
    }


def test_default_cache_is_under_the_configured_data_dir(tmp_path, monkeypatch, caplog):
    """<data_dir>/training/<dataset>; a dataset that the earlier default (benchmarks/.cache/scifact)
    holds is still found there, with a warning naming both folders, until it is moved."""
    from hybridsearch.engine.config import Settings
    from hybridsearch.training import hard_negatives

    legacy = tmp_path / "legacy"
    monkeypatch.setattr(hard_negatives, "LEGACY_CACHE", legacy)
    settings = Settings(data_dir=tmp_path / "data")
    new = tmp_path / "data" / "training" / "my_scifact"
    assert hard_negatives.default_cache_dir(tmp_path / "my-scifact", settings) == new

    legacy.mkdir()
    (legacy / "collection-my_scifact.json").write_text("{}")
    with caplog.at_level("WARNING", logger="hybridsearch.training.hard_negatives"):
        assert hard_negatives.default_cache_dir(tmp_path / "my-scifact", settings) == legacy
    assert "earlier default cache" in caplog.text and str(new) in caplog.text and str(legacy) in caplog.text
    assert hard_negatives.default_cache_dir(tmp_path / "other", settings) == tmp_path / "data" / "training" / "other"
    new.mkdir(parents=True)  # moved
    assert hard_negatives.default_cache_dir(tmp_path / "my-scifact", settings) == new


def test_cli_caches_under_the_configured_data_dir(tmp_path, monkeypatch, capsys):
    """`hsearch train-reranker` without --cache-dir: the data_dir of its --config, the recipe."""
    from types import SimpleNamespace

    import yaml

    from hybridsearch.engine.cli import main
    from hybridsearch.training import hard_negatives
    from hybridsearch.training.cross_encoder import RECIPE

    monkeypatch.setattr(hard_negatives, "LEGACY_CACHE", tmp_path / "legacy")
    seen = {}

    def fake_train(collections, **kwargs):
        seen.update(kwargs, collections=collections)
        info = {"examples": 1, "queries": 1, "epochs": 2, "pairs_per_epoch": 4, "loss": "listwise", "epoch_losses": []}
        return SimpleNamespace(cached=True, train_seconds=0.0, total_seconds=0.0, info=info, sources={"judged": 1})

    monkeypatch.setattr(hard_negatives, "train_from_collections", fake_train)
    config = tmp_path / "hsearch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert main(["train-reranker", "--beir", str(tmp_path / "scifact"), "--config", str(config), "--quiet"]) == 0
    cache = tmp_path / "data" / "training" / "scifact"
    (collection,) = seen["collections"]
    assert (collection.cache_dir, collection.profile, seen["out"]) == (cache, "minilm-bm25", cache / "reranker")
    assert seen["config"].key() == RECIPE.key()
    assert f"reranker {cache / 'reranker'}: up to date" in capsys.readouterr().err
