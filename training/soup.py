"""Average rerankers fine-tuned from the same base model into one (a "model soup").

Two cross-encoders trained from the same weights on different data (say, the judged queries
alone and the judged queries with self-supervised pairs) usually sit in one basin of the
loss, and the average of their weights scores like an ensemble of the two at the cost of one
model (Wortsman et al., 2022, "Model soups"). Measured on a SciFact dev split held out of
train, the soup of those two beat both, reranked alone, at every depth (+0.057 nDCG@10 over
the judged model at depth 20); on SciFact test, with models trained on all of train, it was
+0.005, within noise (benchmarks/README.md, "Reranker training sources"). Measure it on your
own held-out queries before serving it.

Averaging only means something for models from the same base: each input's
``training_info.json`` must name the same base weights (``key.base_hash``), and every weight
tensor must have the same name and shape. Early-exit heads are not averaged (train them on the
soup with ``hsearch train-reranker --exits`` instead).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from hybridsearch.training.cross_encoder import FORMAT, INFO_FILE, is_complete, model_hash, read_info, swap_in

WEIGHTS = "model.safetensors"


def _carried(path: Path) -> bool:
    """The first input's files the soup keeps: config and tokenizer, not its weights, its
    training info or the scores an evaluation left beside it."""
    return path.is_file() and path.name not in (WEIGHTS, "pytorch_model.bin", INFO_FILE) and path.suffix != ".jsonl"


def _checked_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"weights: {len(weights)} given for {n} models")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _inputs(models: Sequence[Path]) -> list[dict]:
    """Each model's training info, after checking it can be averaged with the first."""
    if len(models) < 2:
        raise ValueError(f"a soup needs at least two models, got {len(models)}")
    infos = []
    for model in models:
        if not is_complete(model) or not (model / WEIGHTS).is_file():
            raise ValueError(
                f"{model} is not a finished reranker of hsearch train-reranker (training_info.json, config, {WEIGHTS}, tokenizer)"
            )
        if (model / "early_exit.json").is_file():
            raise ValueError(
                f"{model} has early-exit heads, which are not averaged; average the plain rerankers, "
                "then train exits on the soup (hsearch train-reranker --exits)"
            )
        infos.append(read_info(model))
    bases = {(info.get("key") or {}).get("base_hash") for info in infos}
    if len(bases) != 1 or None in bases:
        named = ", ".join(
            f"{m} ({(i.get('key') or {}).get('base_hash')} = {i.get('base_model')})"
            for m, i in zip(models, infos, strict=True)
        )
        raise ValueError(
            f"the models were trained from different base weights ({named}); only fine-tunes of one base can be averaged"
        )
    return infos


def average_rerankers(models: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> dict:
    """Write the (weighted) average of ``models`` to ``out``; return its training info."""
    import torch
    from safetensors.torch import load_file, save_file

    models = [Path(m) for m in models]
    out = Path(out)
    share = _checked_weights(weights, len(models))
    infos = _inputs(models)
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for i, (model, w) in enumerate(zip(models, share, strict=True)):
        tensors = load_file(str(model / WEIGHTS))
        if i == 0:
            first = tensors
            total = {k: v.to(torch.float64) * w if v.is_floating_point() else v for k, v in tensors.items()}
            continue
        if tensors.keys() != first.keys():
            missing, extra = sorted(first.keys() - tensors.keys()), sorted(tensors.keys() - first.keys())
            raise ValueError(f"{model} has other weights than {models[0]}: missing {missing[:3]}, extra {extra[:3]}")
        for k, v in tensors.items():
            if v.shape != first[k].shape:
                raise ValueError(f"{model}: weight {k} has shape {tuple(v.shape)}, {models[0]} {tuple(first[k].shape)}")
            if v.is_floating_point():
                total[k] += v.to(torch.float64) * w
            elif not torch.equal(v, first[k]):
                raise ValueError(f"{model}: integer buffer {k} differs from {models[0]}'s; not the same architecture")
    averaged = {k: v.to(first[k].dtype).contiguous() for k, v in total.items()}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in models[0].iterdir():
        if _carried(path):
            shutil.copy2(path, tmp / path.name)
    save_file(averaged, str(tmp / WEIGHTS), metadata={"format": "pt"})
    base = infos[0]
    info = {
        "format": FORMAT,
        "complete": True,
        # Not a training key: train-reranker never takes a soup for one of its own runs.
        "key": {"base_hash": base["key"]["base_hash"], "soup": [model_hash(m) for m in models], "weights": share},
        "base_model": base.get("base_model"),
        "max_length": min(int(i.get("max_length") or 512) for i in infos),
        "soup_of": [
            {
                "dir": str(m.resolve()),
                "model_hash": model_hash(m),
                "examples": i.get("examples"),
                "epoch_losses": i.get("epoch_losses"),
            }
            for m, i in zip(models, infos, strict=True)
        ],
        "weights": share,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
    swap_in(tmp, out)
    return info
