"""Averaging rerankers fine-tuned from one base (training/soup.py, `hsearch average-rerankers`),
on the tiny BERT cross-encoder built at test time: the weights, the refusals, and the soup
loading and scoring Chinese, English and mixed text through the real backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hybridsearch.engine.cli import main
from hybridsearch.training.cross_encoder import FORMAT, INFO_FILE
from hybridsearch.training.soup import average_rerankers
from tests.rerank.tiny_layered import build_tiny_bert_reranker

BASE_HASH = "b" * 16


def fine_tune(tmp_path: Path, name: str, seed: int, base_hash: str = BASE_HASH, max_length: int = 64) -> Path:
    """A copy of the tiny model with its weights moved (what fine-tuning does) and the
    training_info train-reranker writes."""
    plain = build_tiny_bert_reranker(tmp_path.parent / "tiny-bert-reranker-soup")
    target = tmp_path / name
    shutil.copytree(plain, target)
    tensors = load_file(str(target / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    moved = {
        k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point() else v
        for k, v in tensors.items()
    }
    save_file(moved, str(target / "model.safetensors"), metadata={"format": "pt"})
    info = {
        "format": FORMAT,
        "complete": True,
        "key": {"base_hash": base_hash},
        "base_model": "tiny",
        "examples": 10 + seed,
        "epoch_losses": [1.0, 0.5],
        "max_length": max_length,
    }
    (target / INFO_FILE).write_text(json.dumps(info))
    (target / "eval-dev-top30.jsonl").write_text('{"meta": {}}\n')  # an evaluation's scores: not carried into the soup
    return target


def test_the_soup_is_the_weighted_mean_and_scores_through_the_backend(tmp_path):
    from hybridsearch.rerank.backends import load_backend

    a, b = fine_tune(tmp_path, "a", 1), fine_tune(tmp_path, "b", 2, max_length=48)
    out = tmp_path / "soup"
    info = average_rerankers([a, b], out, weights=[3, 1])
    assert info["weights"] == [0.75, 0.25] and info["max_length"] == 48  # the shorter window both were trained for
    ta, tb, soup = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    for k in ta:
        if ta[k].is_floating_point():
            assert torch.allclose(soup[k], 0.75 * ta[k] + 0.25 * tb[k], atol=1e-6), k
        else:
            assert torch.equal(soup[k], ta[k])
    assert not (out / "eval-dev-top30.jsonl").exists() and (out / "tokenizer_config.json").is_file()
    assert [s["examples"] for s in json.loads((out / INFO_FILE).read_text())["soup_of"]] == [11, 12]
    backend = load_backend("cross-encoder", "soup", str(out), max_length=48, batch_size=4)
    raw = backend.score("癌细胞 protein expression", ["蛋白质 in cancer cells", "immune response 免疫", "细胞"]).raw
    assert raw.shape == (3,) and np.all(np.isfinite(raw))
    backend.close()


def test_the_command_writes_an_equal_soup_and_names_what_it_did(tmp_path, capsys):
    a, b = fine_tune(tmp_path, "a", 1), fine_tune(tmp_path, "b", 2)
    assert main(["average-rerankers", str(a), str(b), "--out", str(tmp_path / "soup")]) == 0
    assert "averaged 2 rerankers (a 0.50, b 0.50)" in capsys.readouterr().out
    ta, tb, soup = (load_file(str(p / "model.safetensors")) for p in (a, b, tmp_path / "soup"))
    k = next(k for k in ta if ta[k].is_floating_point())
    assert torch.allclose(soup[k], (ta[k] + tb[k]) / 2, atol=1e-6)


def test_models_of_different_bases_are_refused_by_name(tmp_path, capsys):
    a, b = fine_tune(tmp_path, "a", 1), fine_tune(tmp_path, "b", 2, base_hash="c" * 16)
    with pytest.raises(ValueError, match="different base weights"):
        average_rerankers([a, b], tmp_path / "soup")
    assert main(["average-rerankers", str(a), str(b), "--out", str(tmp_path / "soup")]) == 2
    assert "different base weights" in capsys.readouterr().err and not (tmp_path / "soup").exists()


def test_other_shapes_early_exit_heads_bad_weights_and_unfinished_models_are_refused(tmp_path):
    a, b = fine_tune(tmp_path, "a", 1), fine_tune(tmp_path, "b", 2)
    with pytest.raises(ValueError, match="at least two models"):
        average_rerankers([a], tmp_path / "soup")
    with pytest.raises(ValueError, match="weights: 3 given for 2 models"):
        average_rerankers([a, b], tmp_path / "soup", weights=[1, 1, 1])
    with pytest.raises(ValueError, match="finite, >= 0 and not all 0"):
        average_rerankers([a, b], tmp_path / "soup", weights=[0, 0])
    with pytest.raises(ValueError, match="finite, >= 0"):
        average_rerankers([a, b], tmp_path / "soup", weights=[1, float("nan")])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(a, unfinished)
    (unfinished / INFO_FILE).unlink()
    with pytest.raises(ValueError, match="not a finished reranker"):
        average_rerankers([a, unfinished], tmp_path / "soup")
    exits = tmp_path / "exits"
    shutil.copytree(b, exits)
    (exits / "early_exit.json").write_text("{}")
    with pytest.raises(ValueError, match="early-exit heads"):
        average_rerankers([a, exits], tmp_path / "soup")
    wider = tmp_path / "wider"
    shutil.copytree(b, wider)
    tensors = load_file(str(wider / "model.safetensors"))
    name = next(k for k in tensors if tensors[k].ndim == 2)
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    save_file(tensors, str(wider / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"weight {name} has shape"):
        average_rerankers([a, wider], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()
