"""Fine-tune a cross-encoder reranker from a transformers encoder directory.

Input is plain data (no engine imports): :class:`TrainingExample` = a query, one relevant
document and a pool of hard negatives. Each optimizer step scores groups of
``1 + negatives`` documents per query; the loss is either listwise (softmax cross-entropy
with the relevant document as the target class, as FlagEmbedding's reranker fine-tuning
does) or pointwise binary cross-entropy. Negatives are re-drawn from the pool every epoch
(seeded).

The head is a fresh ``AutoModelForSequenceClassification`` with one label, so the saved
directory (config.json, model.safetensors, tokenizer files) loads in every rerank backend:
``FlagReranker``, sentence-transformers' ``CrossEncoder`` and the ONNX export. The shared
scoring path (:mod:`rerank.base`) sends no ``token_type_ids``; training does the same, and
the saved model's token-type embeddings are all set to the one it was trained with, so
scoring with or without segment ids gives the same result.

Early exits (``TrainConfig.exits``, ``hsearch train-reranker --exits 2,4,6``): the model
gets a scoring head after each of those layers (:mod:`rerank.early_exit`; the last exit is
the model's own head) and the loss is the mean of the per-exit losses, so every exit learns
to rank while the encoder is shared; the heads are saved beside the weights
(``early_exit.json``, ``exit_heads.safetensors``), which the other backends ignore. Without
``exits`` training is what it was (same loss, same cache key).

Caching: ``<out>/training_info.json`` records the base model, the data hash and every
setting that changes the weights; a directory whose info matches is returned as is.
While training, ``<out>.partial/checkpoint.pt`` is written every ``checkpoint_seconds``;
an interrupted run with the same settings resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "hsearch-reranker/1"
INFO_FILE = "training_info.json"
CHECKPOINT_FILE = "checkpoint.pt"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LOSSES = ("listwise", "bce")


@dataclass(frozen=True)
class TrainingExample:
    """A query, one relevant document, and hard negatives to draw from."""

    query: str
    positive: str
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class TrainConfig:
    # The defaults are the measured recipe (RECIPE below says how it was measured): one
    # source for `hsearch train-reranker`, `hsearch bench` and every caller.
    epochs: int = 2
    negatives: int = 3  # hard negatives per relevant document in each group
    batch_groups: int = 8  # groups (queries) per optimizer step
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 192
    loss: str = "listwise"
    seed: int = 13
    # bfloat16 autocast for the forward pass (weights and optimizer stay float32): about
    # twice as fast on CPUs with AVX512-BF16/AMX, slower elsewhere.
    bf16: bool = False
    # Learning rate of the new head (classifier, and pooler where the model has one);
    # None: ``lr``. A fresh head on a small data set learns far faster with its own rate.
    head_lr: float | None = 1e-3
    # Layers with an exit head, trained jointly (a loss at every exit, averaged); () = none,
    # the plain cross-encoder. The model's last layer is always an exit (its own head).
    exits: tuple[int, ...] = ()
    # Keep the word-embedding table as the base model has it. A multilingual base's table is most
    # of its weights (multilingual-e5-small: 96M of 118M for 250k pieces); training moves only
    # the rows of the tokens a small data set holds, away from the rest, and AdamW's state for
    # the table alone is 770 MB. Frozen, a step updates 22M weights.
    freeze_embeddings: bool = False
    # Not part of the cache key: they do not change the result.
    checkpoint_seconds: float = field(default=120.0, compare=False)
    threads: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("epochs", "negatives", "batch_groups", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"head_lr must be > 0, got {self.head_lr}")
        exits = tuple(sorted({int(x) for x in self.exits}))
        if any(x < 1 for x in exits):
            raise ValueError(f"exits must be layer numbers >= 1, got {list(self.exits)}")
        object.__setattr__(self, "exits", exits)

    def key(self) -> dict:
        values = asdict(self)
        values.pop("checkpoint_seconds")
        values.pop("threads")
        if not values["exits"]:
            values.pop("exits")  # the key of a plain cross-encoder is what it was before exits existed
        else:
            values["exits"] = list(values["exits"])
        if not values["freeze_embeddings"]:
            values.pop("freeze_embeddings")  # likewise: the key of every earlier run stands
        return values


# What `hsearch train-reranker` and `hsearch bench` train with unless told otherwise. On
# SciFact train (919 groups of 1 relevant + 3 hard negatives, 2 cores) it takes about 22 min
# and the listwise loss falls from ln 4 (chance) to about 0.54 in the second epoch; the
# head's own rate matters most (at the encoder's 5e-5 the fresh head barely moved for 40 %
# of the steps, and a 1-epoch model trained that way lost to fusion at every depth).
RECIPE = TrainConfig()


@dataclass
class TrainResult:
    model_dir: Path
    cached: bool
    info: dict
    seconds: float  # spent by this call


# ---------------------------------------------------------------- hashing / cache
def examples_hash(examples: Sequence[TrainingExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.query.encode() + b"\x00" + ex.positive.encode() + b"\x00")
        for neg in ex.negatives:
            h.update(neg.encode() + b"\x01")
        h.update(b"\x02")
    return h.hexdigest()[:16]


def model_hash(model_dir: Path) -> str:
    """SHA-256 (16 hex) of a model directory's config and weights."""
    h = hashlib.sha256()
    model_dir = Path(model_dir)
    for name in ("config.json", *WEIGHT_FILES):
        path = model_dir / name
        if path.is_file():
            h.update(name.encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def read_info(model_dir: Path) -> dict | None:
    path = Path(model_dir) / INFO_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_complete(model_dir: Path, key: dict | None = None) -> bool:
    """A finished model (weights, config, tokenizer, info) — trained with ``key`` if given."""
    model_dir = Path(model_dir)
    info = read_info(model_dir)
    if not info or not info.get("complete") or info.get("format") != FORMAT:
        return False
    if not (model_dir / "config.json").is_file() or not any((model_dir / w).is_file() for w in WEIGHT_FILES):
        return False
    if not (model_dir / "tokenizer_config.json").is_file():
        return False
    if (info.get("key") or {}).get("exits") and not (model_dir / "early_exit.json").is_file():
        return False
    return key is None or info.get("key") == key


# ---------------------------------------------------------------- the data plan
def _sample(pool: Sequence[str], k: int, rng: random.Random) -> list[str]:
    """``k`` of ``pool`` without replacement, cycling through the pool when it is short."""
    out: list[str] = []
    while len(out) < k:
        out.extend(rng.sample(list(pool), min(len(pool), k - len(out))))
    return out


def epoch_plan(
    examples: Sequence[TrainingExample], config: TrainConfig, epoch: int
) -> list[list[tuple[str, list[str]]]]:
    """Batches of (query, [positive, negatives...]) groups for one epoch; a function of (seed, epoch)."""
    rng = random.Random(f"{config.seed}:{epoch}")
    order = list(range(len(examples)))
    rng.shuffle(order)
    groups = []
    for i in order:
        ex = examples[i]
        groups.append((ex.query, [ex.positive, *_sample(ex.negatives, config.negatives, rng)]))
    return [groups[i : i + config.batch_groups] for i in range(0, len(groups), config.batch_groups)]


def steps_per_epoch(n_examples: int, config: TrainConfig) -> int:
    return math.ceil(n_examples / config.batch_groups)


# ---------------------------------------------------------------- training
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    def restore() -> None:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()

    return restore


def _tie_token_types(model) -> None:
    """Make every token-type embedding equal to type 0 (the one training used)."""
    import torch

    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    table = getattr(embeddings, "token_type_embeddings", None)
    if table is not None and table.weight.shape[0] > 1:
        with torch.no_grad():
            table.weight[1:] = table.weight[0]


def _is_head(name: str) -> bool:
    """Parameters of the classification head (and BERT's pooler, which feeds it), and the
    exit heads of an early-exit model (whose transformers model is under ``model.``)."""
    if name.startswith("heads."):
        return True
    return name.startswith(("classifier", "model.classifier")) or ".pooler." in name or name.startswith("pooler")


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def param_groups(model, config: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; the new head at ``head_lr``."""
    groups = []
    for head in (False, True):
        for decay in (True, False):
            chosen = [
                p
                for n, p in model.named_parameters()
                if p.requires_grad and _is_head(n) == head and (not any(s in n for s in NO_DECAY)) == decay
            ]
            if chosen:
                groups.append(
                    {
                        "params": chosen,
                        "weight_decay": config.weight_decay if decay else 0.0,
                        "lr": (config.head_lr or config.lr) if head else config.lr,
                        "head": head,
                    }
                )
    return groups


def _loss_fn(kind: str, group: int):
    import torch

    def listwise(logits):  # (groups, 1 + negatives), the positive first
        target = torch.zeros(logits.shape[0], dtype=torch.long)
        return torch.nn.functional.cross_entropy(logits, target)

    def bce(logits):
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        # Weigh the one positive as much as the negatives together.
        weights = torch.ones_like(logits)
        weights[:, 0] = float(group - 1)
        return (
            torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, weight=weights)
            * group
            / (2 * (group - 1))
        )

    return listwise if kind == "listwise" else bce


def _curve(losses: Sequence[float], points: int = 20) -> list[float]:
    if not losses:
        return []
    points = min(points, len(losses))
    edges = [round(i * len(losses) / points) for i in range(points + 1)]
    return [round(sum(losses[a:b]) / (b - a), 5) for a, b in pairwise(edges) if b > a]


def train_cross_encoder(
    base_dir: str | os.PathLike,
    examples: Sequence[TrainingExample],
    out_dir: str | os.PathLike,
    config: TrainConfig = RECIPE,
    *,
    base_name: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune ``base_dir`` on ``examples`` and save a cross-encoder to ``out_dir``.

    Returns at once (``cached=True``) when ``out_dir`` already holds a model trained from the
    same base, data and settings. ``on_step(step, loss)`` is called after every optimizer
    step (tests use it to interrupt a run).
    """
    started = time.perf_counter()
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if not examples:
        raise ValueError("no training examples")
    empty = [i for i, ex in enumerate(examples) if not ex.negatives]
    if empty:
        raise ValueError(f"training example {empty[0]} (query {examples[empty[0]].query[:60]!r}) has no negatives")
    key = {
        "base_hash": model_hash(base_dir),
        "data_hash": examples_hash(examples),
        "examples": len(examples),
        **config.key(),
    }
    if is_complete(out_dir, key):
        log.info("reranker in %s is up to date (same base, data and settings); not training", out_dir)
        return TrainResult(out_dir, True, read_info(out_dir), time.perf_counter() - started)

    _set_up_torch(config)
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    run = _TrainingRun.start(base_dir, examples, config, key, partial / CHECKPOINT_FILE)
    run.resume()
    train_seconds = run.loop(examples, progress, on_step)
    run.model.eval()
    _tie_token_types(run.model)
    info = _training_info(run, examples, base_dir, base_name, train_seconds)
    _save_model(run, info, out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return TrainResult(out_dir, False, info, time.perf_counter() - started)


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16/AMX), as oneDNN reports it."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _set_up_torch(config: TrainConfig) -> None:
    """torch threads, and a warning when bf16 is asked for on a CPU that only emulates it."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    if config.bf16 and not native_bf16():
        # Emulated bfloat16 is no saving: on 2 AVX2 cores a step took 136 s against 7 s in float32.
        log.warning(
            "bf16 on a CPU without native bfloat16 (torch reports %s, no AVX512-BF16/AMX): expect training "
            "many times slower than float32; drop --bf16",
            torch.backends.cpu.get_cpu_capability(),
        )


@dataclass
class _TrainingRun:
    """One training run: the model and optimizer, and the progress a checkpoint saves
    (``<out>.partial/checkpoint.pt``, restored by :meth:`resume` when its key matches)."""

    config: TrainConfig
    key: dict
    checkpoint_path: Path
    tokenizer: Any
    model: Any
    optimizer: Any
    scheduler: Any
    steps_per_epoch: int
    step: int = 0
    losses: list[float] = field(default_factory=list)
    elapsed_before: float = 0.0  # training seconds of the runs this one resumes
    loop_started: float = 0.0

    @property
    def group(self) -> int:
        return 1 + self.config.negatives

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @classmethod
    def start(
        cls, base_dir: Path, examples: Sequence[TrainingExample], config: TrainConfig, key: dict, checkpoint_path: Path
    ) -> _TrainingRun:
        """The base model with a fresh one-label head (seeded), AdamW and a linear warmup schedule."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

        restore = _quiet_transformers()
        try:
            torch.manual_seed(config.seed)  # the new head's initial weights
            tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base_dir), num_labels=1, ignore_mismatched_sizes=True
            )
            if config.freeze_embeddings:
                model.get_input_embeddings().weight.requires_grad_(False)
            if config.exits:
                from hybridsearch.rerank.early_exit import EarlyExitCrossEncoder

                # Heads start as copies of the (fresh) classification head.
                model = EarlyExitCrossEncoder.from_model(model, config.exits)
        finally:
            restore()
        spe = steps_per_epoch(len(examples), config)
        total_steps = spe * config.epochs
        optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
        return cls(config, key, checkpoint_path, tokenizer, model, optimizer, scheduler, spe)

    def resume(self) -> None:
        """Continue from the checkpoint if it was written for this key (same base, data, settings)."""
        import torch

        if not self.checkpoint_path.exists():
            return
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn file from a kill mid-write is replaced atomically, but be safe
            log.warning("ignoring unreadable checkpoint %s: %s", self.checkpoint_path, exc)
            state = None
        if state is not None and state.get("key") == self.key:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            self.step, self.losses, self.elapsed_before = (
                int(state["step"]),
                list(state["losses"]),
                float(state["elapsed"]),
            )
            log.info(
                "resuming reranker training at step %d/%d from %s", self.step, self.total_steps, self.checkpoint_path
            )
        elif state is not None:
            log.info("checkpoint %s is for other data or settings; starting over", self.checkpoint_path)

    def save_checkpoint(self, next_step: int) -> None:
        import torch

        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "key": self.key,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "step": next_step,
                "losses": self.losses,
                "elapsed": self.elapsed_before + time.perf_counter() - self.loop_started,
            },
            tmp,
        )
        os.replace(tmp, self.checkpoint_path)

    def loop(
        self, examples: Sequence[TrainingExample], progress: bool, on_step: Callable[[int, float], None] | None
    ) -> float:
        """Train from :attr:`step` to the end, checkpointing every ``checkpoint_seconds``;
        returns the training seconds of this run and the ones it resumed."""
        from tqdm import tqdm

        config, spe, total_steps = self.config, self.steps_per_epoch, self.total_steps
        loss_fn = _loss_fn(config.loss, self.group)
        self.model.train()
        plan, plan_epoch = None, -1
        self.loop_started = time.perf_counter()
        last_checkpoint = time.monotonic()
        ema = None
        with tqdm(
            total=total_steps,
            initial=self.step,
            desc="train reranker",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not progress,
        ) as bar:
            while self.step < total_steps:
                epoch, index = divmod(self.step, spe)
                if epoch != plan_epoch:
                    plan, plan_epoch = epoch_plan(examples, config, epoch), epoch
                value = self.train_step(plan[index], loss_fn)
                self.losses.append(value)
                self.step += 1
                ema = value if ema is None else 0.95 * ema + 0.05 * value
                bar.set_postfix(loss=f"{ema:.4f}", epoch=f"{epoch + 1}/{config.epochs}")
                bar.update(1)
                if on_step is not None:
                    on_step(self.step, value)
                if self.step < total_steps and time.monotonic() - last_checkpoint >= config.checkpoint_seconds:
                    self.save_checkpoint(self.step)
                    last_checkpoint = time.monotonic()
        return self.elapsed_before + time.perf_counter() - self.loop_started

    def train_step(self, batch: list[tuple[str, list[str]]], loss_fn) -> float:
        """One optimizer step on a batch of (query, [positive, negatives...]) groups; its loss."""
        import torch

        config = self.config
        enc = self.tokenizer(
            [q for q, docs in batch for _ in docs],
            [d for _, docs in batch for d in docs],
            truncation="longest_first",
            max_length=config.max_length,
            padding=True,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            if config.exits:
                # (pairs, exits): one pass, a logit at every exit; the loss is their mean.
                logits = self.model.forward_all(enc["input_ids"], enc["attention_mask"])
            else:
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        if config.exits:
            per_exit = logits.float().view(len(batch), self.group, logits.shape[1])
            loss = torch.stack([loss_fn(per_exit[:, :, e]) for e in range(per_exit.shape[2])]).mean()
        else:
            loss = loss_fn(logits.float().view(len(batch), self.group))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def _training_info(
    run: _TrainingRun, examples: Sequence[TrainingExample], base_dir: Path, base_name: str | None, train_seconds: float
) -> dict:
    """``training_info.json`` of a finished run (its ``key`` is what a later run compares)."""
    import torch

    config, key, losses, spe = run.config, run.key, run.losses, run.steps_per_epoch
    return {
        "format": FORMAT,
        "complete": True,
        "key": key,
        "base_model": base_name or str(base_dir),
        "base_model_dir": str(base_dir),
        "seed": config.seed,
        "examples": len(examples),
        "queries": len({ex.query for ex in examples}),
        "pairs_per_epoch": len(examples) * run.group,
        "epochs": config.epochs,
        "steps": run.total_steps,
        "loss": config.loss,
        "negatives": config.negatives,
        "batch_groups": config.batch_groups,
        "lr": config.lr,
        "head_lr": config.head_lr,
        "max_length": config.max_length,
        "bf16": config.bf16,
        "data_hash": key["data_hash"],
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "epoch_losses": [
            round(sum(losses[e * spe : (e + 1) * spe]) / max(1, len(losses[e * spe : (e + 1) * spe])), 5)
            for e in range(config.epochs)
        ],
        "loss_curve": _curve(losses),
        "token_type_ids": "not used (all token-type embeddings equal)",
        **({"exits": list(run.model.exit_layers), "exit_loss": "mean of the per-exit losses"} if config.exits else {}),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _save_model(run: _TrainingRun, info: dict, out_dir: Path) -> None:
    """Write model, tokenizer and info to ``<out>.tmp``, then swap it in for ``out_dir``."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    restore = _quiet_transformers()
    try:
        run.model.save_pretrained(str(tmp))
        run.tokenizer.save_pretrained(str(tmp))
    finally:
        restore()
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
    swap_in(tmp, out_dir)


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the finished ``tmp`` (renames: a reader never sees half a model)."""
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)


def _versions() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}
