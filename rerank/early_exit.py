"""An early-exit cross-encoder: scoring heads after chosen layers of a BERT-family encoder.

A cross-encoder (``AutoModelForSequenceClassification`` of BERT, RoBERTa or XLM-RoBERTa:
the project's MiniLM-L6 reranker is a 6-layer ``BertForSequenceClassification``) scores a
pair at its last layer. This module adds a scoring head after some earlier layers
(``exit_layers``, e.g. ``[2, 4, 6]``), so a pair can be scored after 2 layers for a third of
the cost, and the pairs worth it continued from the saved hidden states to layer 4 or 6
without running layers 1-2 again (Xin et al., "DeeBERT: Dynamic Early Exiting for
Accelerating BERT Inference", ACL 2020; Xin et al., "Early Exiting BERT for Efficient
Document Ranking", SustaiNLP 2020, which cascades exits for reranking).

**The heads.** An intermediate exit reads the first token ([CLS] / <s>) of its layer's
output: ``dense(hidden, hidden) -> tanh -> dropout -> linear(hidden, 1)``, the arithmetic of
BERT's pooler + classifier and of RoBERTa's classification head. A new head starts as a copy
of the model's own head (for a two-label head, the relevant-minus-irrelevant margin), so an
untrained exit already gives that head's reading of an earlier layer. The last exit *is* the
model's own head: full-depth scores are the ones every other backend gives.

**On disk.** Beside the transformers files (config.json, model.safetensors, tokenizer) a
model with exits has ``early_exit.json`` (format, exit layers, head layout) and
``exit_heads.safetensors`` (the intermediate heads, keys ``"<layer>.dense.weight"`` ...).
Other backends ignore both files: the directory still loads as a plain cross-encoder in
``FlagReranker``, sentence-transformers' ``CrossEncoder`` and the ONNX export. A directory
without them has one exit, its last layer.

**Resuming.** :meth:`EarlyExitCrossEncoder.forward_to` returns the logits at a layer and an
:class:`ExitState` (that layer's hidden states and the 2-D attention mask);
:meth:`EarlyExitCrossEncoder.continue_to` runs only the layers above it, for the rows asked
for, trimmed to their longest sequence. The layers are the model's own modules
(``base_model.encoder.layer[i]``), called with the attention mask the model itself builds,
so resuming from layer a to b gives what a full pass to b gives (tests: within 1e-4).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

FORMAT = "hsearch-early-exit/1"
CONFIG_FILE = "early_exit.json"
HEADS_FILE = "exit_heads.safetensors"
HEAD_LAYOUT = "first token -> dense(hidden, hidden) -> tanh -> dropout -> linear(hidden, 1)"


class ExitHead(nn.Module):
    """One intermediate exit: BERT's pooler + one-logit classifier on the first token."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch,) logits."""
        x = torch.tanh(self.dense(hidden_states[:, 0]))
        return self.out_proj(self.dropout(x)).squeeze(-1)


@dataclass(frozen=True)
class ExitState:
    """Where a batch stopped: the hidden states after ``layer`` layers and the 2-D mask."""

    layer: int
    hidden: torch.Tensor  # (batch, seq, hidden)
    mask: torch.Tensor  # (batch, seq), 1 for real tokens

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1)

    def select(self, rows: Sequence[int]) -> ExitState:
        """The chosen rows, trimmed to the longest of them (padding columns cost time)."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.hidden.device)
        mask = self.mask.index_select(0, index)
        width = max(1, int(mask.sum(dim=1).max())) if len(index) else 1
        return ExitState(self.layer, self.hidden.index_select(0, index)[:, :width], mask[:, :width])


def _head_kind(model) -> str:
    """'pooler' (BERT: pooler + dropout + linear) or 'roberta' (classifier.dense/out_proj)."""
    classifier = getattr(model, "classifier", None)
    base = getattr(model, "base_model", None)
    if (
        classifier is None
        or base is None
        or not hasattr(base, "embeddings")
        or not hasattr(getattr(base, "encoder", None), "layer")
    ):
        raise ValueError(
            f"early exit needs a BERT-family sequence classifier (embeddings, encoder.layer, classifier); "
            f"{type(model).__name__} is not one"
        )
    if isinstance(classifier, nn.Linear) and getattr(base, "pooler", None) is not None:
        return "pooler"
    if isinstance(getattr(classifier, "dense", None), nn.Linear) and isinstance(
        getattr(classifier, "out_proj", None), nn.Linear
    ):
        return "roberta"
    raise ValueError(
        f"early exit: the classification head of {type(model).__name__} is neither BERT's pooler + linear nor RoBERTa's dense + out_proj"
    )


def _relevance_row(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-logit head from a 1- or 2-label one (two labels: the relevant-minus-irrelevant margin)."""
    if weight.shape[0] == 1:
        return weight[0:1].clone(), bias[0:1].clone()
    if weight.shape[0] == 2:
        return (weight[1:2] - weight[0:1]).clone(), (bias[1:2] - bias[0:1]).clone()
    raise ValueError(
        f"early exit: a classification head with {weight.shape[0]} labels is not a relevance score (1 or 2 labels)"
    )


def _mask_factory():
    """The function building the attention mask a BERT encoder layer takes from a 2-D mask,
    the way the model's own forward builds it (transformers 5: by attention implementation;
    4: the additive extended mask)."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # transformers 4

        def extended(model, embeddings, mask):
            return model.base_model.get_extended_attention_mask(mask, mask.shape)

        return extended

    def bidirectional(model, embeddings, mask):
        # Positional: the embeddings' keyword was input_embeds in 5.0 and is inputs_embeds later.
        return create_bidirectional_mask(model.base_model.config, embeddings, mask)

    return bidirectional


class EarlyExitCrossEncoder(nn.Module):
    """A transformers cross-encoder with scoring heads after ``exit_layers``.

    ``exit_layers`` always ends with the model's depth (its own head); the others have an
    :class:`ExitHead` in :attr:`heads` (keys: the layer as a string).
    """

    def __init__(self, model, exit_layers: Sequence[int] = (), heads: dict | None = None):
        super().__init__()
        self.model = model
        self.head_kind = _head_kind(model)
        depth = self.num_layers
        layers = sorted({int(x) for x in exit_layers} | {depth})
        bad = [x for x in layers if not 1 <= x <= depth]
        if bad:
            raise ValueError(f"exit layers must be in 1..{depth} (the model's layers); got {bad}")
        self.exit_layers: list[int] = layers
        self.heads = nn.ModuleDict()
        for layer in layers[:-1]:
            given = (heads or {}).get(layer)
            self.heads[str(layer)] = given if given is not None else self._head_like_own()
        self._make_mask = _mask_factory()

    # ------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model, exit_layers: Sequence[int]) -> EarlyExitCrossEncoder:
        """Exits after ``exit_layers`` with new heads, each a copy of the model's own head."""
        return cls(model, exit_layers)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, *, device: str = "cpu", **model_kwargs
    ) -> EarlyExitCrossEncoder:
        """Load a cross-encoder directory and the exit heads saved beside it (if any)."""
        from transformers import AutoModelForSequenceClassification

        model_dir = Path(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), **model_kwargs)
        spec = read_exit_config(model_dir)
        if spec is None:
            out = cls(model, ())
        else:
            depth = model.config.num_hidden_layers
            if spec["num_hidden_layers"] != depth:
                raise ValueError(
                    f"{model_dir / CONFIG_FILE} was written for {spec['num_hidden_layers']} layers; the model has {depth}"
                )
            heads = _load_heads(model_dir, spec["exit_layers"], depth, model.config)
            out = cls(model, spec["exit_layers"], heads)
        out.to(torch.device(device))
        return out.eval()

    def _head_like_own(self) -> ExitHead:
        """A new exit head holding a copy of the model's own head."""
        config = self.model.config
        dropout = getattr(config, "classifier_dropout", None)
        head = ExitHead(config.hidden_size, config.hidden_dropout_prob if dropout is None else dropout)
        if self.head_kind == "pooler":
            dense, out = self.model.base_model.pooler.dense, self.model.classifier
        else:
            dense, out = self.model.classifier.dense, self.model.classifier.out_proj
        with torch.no_grad():
            head.dense.weight.copy_(dense.weight)
            head.dense.bias.copy_(dense.bias)
            weight, bias = _relevance_row(out.weight, out.bias)
            head.out_proj.weight.copy_(weight)
            head.out_proj.bias.copy_(bias)
        return head.to(dense.weight.device, dense.weight.dtype)

    # ------------------------------------------------------------ what it is
    @property
    def num_layers(self) -> int:
        return len(self.model.base_model.encoder.layer)

    @property
    def base_model(self):
        """The encoder (``training.cross_encoder`` ties its token-type embeddings through this)."""
        return self.model.base_model

    @property
    def config(self):
        return self.model.config

    def check_layer(self, layer: int) -> int:
        """``layer`` if the model has an exit there; else a ValueError naming the allowed ones."""
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or int(layer) not in self.exit_layers:
            raise ValueError(
                f"no exit at layer {layer!r}: this model's exit layers are {self.exit_layers} (of {self.num_layers} layers)"
            )
        return int(layer)

    # ------------------------------------------------------------ scoring
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitState:
        """Layer 0: the embeddings (no token-type ids, as every backend scores)."""
        hidden = self.model.base_model.embeddings(input_ids=input_ids)
        return ExitState(0, hidden, attention_mask)

    def run_layers(self, state: ExitState, layer: int) -> ExitState:
        """Run the encoder layers above ``state.layer`` up to ``layer``."""
        if layer < state.layer:
            raise ValueError(f"cannot continue down from layer {state.layer} to layer {layer}")
        hidden = state.hidden
        if layer > state.layer:
            mask = self._make_mask(self.model, hidden, state.mask)
            for module in self.model.base_model.encoder.layer[state.layer : layer]:
                out = module(hidden, attention_mask=mask)
                hidden = out[0] if isinstance(out, tuple) else out
        return ExitState(layer, hidden, state.mask)

    def logits_at(self, state: ExitState) -> torch.Tensor:
        """The exit's logits for ``state`` (at an exit layer): (batch,)."""
        layer = self.check_layer(state.layer)
        if layer != self.exit_layers[-1]:
            return self.heads[str(layer)](state.hidden)
        if self.head_kind == "pooler":
            logits = self.model.classifier(self.model.dropout(self.model.base_model.pooler(state.hidden)))
        else:
            logits = self.model.classifier(state.hidden)
        if logits.shape[-1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits[:, 0]

    def forward_to(
        self, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ExitState]:
        """Score a padded batch at exit ``layer``: (logits (batch,), the state to continue from)."""
        self.check_layer(layer)
        state = self.run_layers(self.embed(input_ids, attention_mask), layer)
        return self.logits_at(state), state

    def continue_to(
        self, layer: int, state: ExitState, rows: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, ExitState]:
        """Continue ``rows`` of a batch (default: all) from ``state.layer`` to exit ``layer``,
        without running the layers below ``state.layer`` again."""
        self.check_layer(layer)
        if layer < state.layer:
            raise ValueError(
                f"cannot continue from layer {state.layer} down to layer {layer}: exits above it are "
                f"{[x for x in self.exit_layers if x >= state.layer]}"
            )
        if rows is not None:
            state = state.select(rows)
        state = self.run_layers(state, layer)
        return self.logits_at(state), state

    def forward_all(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits at every exit in one pass: (batch, len(exit_layers)), for joint training."""
        state = self.embed(input_ids, attention_mask)
        columns = []
        for layer in self.exit_layers:
            state = self.run_layers(state, layer)
            columns.append(self.logits_at(state))
        return torch.stack(columns, dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_all(input_ids, attention_mask)

    # ------------------------------------------------------------ saving
    def save_pretrained(self, out_dir: str | os.PathLike, **kwargs) -> None:
        """The transformers directory, plus the exit heads beside it."""
        self.model.save_pretrained(str(out_dir), **kwargs)
        self.save_exit_heads(out_dir)

    def save_exit_heads(self, out_dir: str | os.PathLike, *, trained: bool = True) -> None:
        """Write ``early_exit.json`` and ``exit_heads.safetensors`` into ``out_dir``."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"{layer}.{name}": value.detach().cpu().contiguous()
            for layer, head in self.heads.items()
            for name, value in head.state_dict().items()
        }
        if tensors:
            save_file(tensors, str(out_dir / HEADS_FILE), metadata={"format": "pt"})
        spec = {
            "format": FORMAT,
            "exit_layers": self.exit_layers,
            "num_hidden_layers": self.num_layers,
            "head": HEAD_LAYOUT,
            "last_exit": "the model's own classification head",
            "heads_file": HEADS_FILE if tensors else None,
            "trained": trained,
        }
        (out_dir / CONFIG_FILE).write_text(json.dumps(spec, indent=1))


def read_exit_config(model_dir: str | os.PathLike) -> dict | None:
    """``early_exit.json`` of a model directory, checked; None when it has none."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path}: format {spec.get('format')!r}, expected {FORMAT!r}")
    layers = spec.get("exit_layers")
    if (
        not isinstance(layers, list)
        or not layers
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)
    ):
        raise ValueError(f"{path}: exit_layers must be a list of layer numbers, got {layers!r}")
    return spec


def _load_heads(model_dir: Path, exit_layers: Sequence[int], depth: int, config) -> dict[int, ExitHead]:
    from safetensors.torch import load_file

    wanted = [x for x in exit_layers if x != depth]
    if not wanted:
        return {}
    path = model_dir / HEADS_FILE
    if not path.is_file():
        raise ValueError(f"{model_dir / CONFIG_FILE} names exits {wanted} but {path} is missing")
    tensors = load_file(str(path))
    heads = {}
    for layer in wanted:
        dropout = getattr(config, "classifier_dropout", None)
        head = ExitHead(config.hidden_size, config.hidden_dropout_prob if dropout is None else dropout)
        prefix = f"{layer}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing = set(head.state_dict()) - set(state)
        if missing:
            raise ValueError(f"{path}: the head of exit {layer} lacks {sorted(missing)}")
        head.load_state_dict(state)
        heads[layer] = head
    return heads


def add_exit_heads(model_dir: str | os.PathLike, exit_layers: Sequence[int]) -> Path:
    """Give a plain cross-encoder directory untrained exits (copies of its own head) at
    ``exit_layers``, in place: for measuring per-layer cost before training any."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    EarlyExitCrossEncoder.from_model(model, exit_layers).save_exit_heads(model_dir, trained=False)
    return Path(model_dir)
