"""FlagEmbedding's layerwise LLM reranker (``BAAI/bge-reranker-v2-minicpm-layerwise``) as a
layered backend: ``cutoff_layers`` becomes the exit layer of ``score_to``/``continue_to``.

The model (``LayerWiseMiniCPMForCausalLM``, FlagEmbedding's own modeling code) is a decoder
with a one-logit head after every layer from ``config.start_layer`` to its last; the score
of a pair at cutoff ``L`` is that head on the RMS-normed hidden state of the last real token
after ``L`` layers. It loads through the library's class, ``LayerWiseFlagLLMReranker``.

**Input.** As ``LayerWiseFlagLLMReranker.compute_score`` builds it, with the library's
instructions and default prompt: ``<bos> A: query \\n B: passage \\n prompt`` (query cut to
``3/4 max_length`` tokens, passage to ``max_length``, then only the passage to fit),
tokenised once here with the library's own ``prepare_for_model_compat``, so a pair's token
count (its cost) is known before scoring. A pair is therefore up to ``max_length`` plus
the separators and the prompt long. Batches are padded on the right, so a pair's score does
not depend on what it is batched with (the library pads on the tokenizer's side; with left
padding its positions shift).

**Resuming.** The library's forward always starts from the embeddings (``cutoff_layers``
picks where to stop, not where to start). ``continue_to`` instead runs the model's own
decoder layers (``model.model.layers[a:b]``) on the saved hidden states with the same causal
mask and positions its forward builds: no recomputation of layers below ``a``. Tests check
it against ``compute_score(cutoff_layers=[b])`` of the library.

**transformers 5.** FlagEmbedding 1.4.2's MiniCPM code was written for transformers 4; under
5.x (this project pins <5.24) four things break, fixed narrowly here:

1. ``config.rope_scaling`` now answers the standardised ``rope_parameters`` dict
   (``{"rope_type": "default", ...}``) and the attention's ``_init_rope`` looks up
   ``["type"]``: KeyError while building the model. :func:`_adapt_to_transformers5` reads a
   default RoPE as "no scaling" and gives a named one its ``type`` key back.
2. ``_tied_weights_keys`` is a list where transformers 5 expects a mapping: AttributeError
   when the config ties embeddings (MiniCPM's default), and on save. The layerwise heads are
   ``Linear(hidden, 1)``, tied to nothing: set to None.
3. ``use_cache=True`` in the config takes a cache path that calls the removed
   ``DynamicCache.from_legacy_cache``. Scoring needs no cache: the loaded model's
   ``config.use_cache`` is set to False.
4. The RoPE tables are non-persistent buffers computed in ``__init__``; transformers 5 builds
   the model on the meta device and loads only saved tensors, so they come back as
   uninitialised memory (NaN scores). :func:`_rebuild_rotary_tables` recomputes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from hybridsearch.rerank.backends.early_exit import LayeredBackend, gather_rows
from hybridsearch.rerank.base import EncodedPairs

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
    "providing a prediction of either 'Yes' or 'No'."
)


def _adapt_to_transformers5() -> None:
    """Make FlagEmbedding's MiniCPM layerwise code construct and run under transformers 5 (idempotent)."""
    from FlagEmbedding.inference.reranker.decoder_only.models import modeling_minicpm_reranker as minicpm

    attention = minicpm.MiniCPMAttention
    if not getattr(attention._init_rope, "_hsearch_adapted", False):
        original = attention._init_rope

        def _init_rope(self):
            scaling = self.config.rope_scaling
            if isinstance(scaling, dict) and "type" not in scaling:
                kind = scaling.get("rope_type", "default")
                if kind == "default":
                    self.rotary_emb = minicpm.MiniCPMRotaryEmbedding(
                        self.head_dim, max_position_embeddings=self.max_position_embeddings, base=self.rope_theta
                    )
                    return
                self.config.rope_scaling = {**scaling, "type": kind}
            original(self)

        _init_rope._hsearch_adapted = True
        attention._init_rope = _init_rope
    if isinstance(getattr(minicpm.LayerWiseMiniCPMForCausalLM, "_tied_weights_keys", None), list):
        minicpm.LayerWiseMiniCPMForCausalLM._tied_weights_keys = None


def _rebuild_rotary_tables(model) -> int:
    """Recompute every RoPE table (``inv_freq``, ``cos_cached``, ``sin_cached``) of a loaded
    model; returns how many. The MiniCPM code computes them in ``__init__`` as non-persistent
    buffers; transformers 5 builds the model on the meta device and loads only the saved
    tensors, so these come back as uninitialised memory (NaN scores) unless rebuilt."""
    from FlagEmbedding.inference.reranker.decoder_only.models import modeling_minicpm_reranker as minicpm

    count = 0
    for module in model.modules():
        if isinstance(module, minicpm.MiniCPMRotaryEmbedding):
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            module.inv_freq = 1.0 / (
                module.base ** (torch.arange(0, module.dim, 2, device=device).float() / module.dim)
            )
            module._set_cos_sin_cache(seq_len=module.max_position_embeddings, device=device, dtype=torch.float32)
            count += 1
    return count


class _LayerwiseState:
    """A batch stopped after ``layer`` decoder layers: un-normed hidden states and 2-D mask."""

    __slots__ = ("layer", "hidden", "mask")

    def __init__(self, layer: int, hidden: torch.Tensor, mask: torch.Tensor):
        self.layer, self.hidden, self.mask = layer, hidden, mask


class LayerwiseBackend(LayeredBackend):
    """``LayerWiseFlagLLMReranker``; exit layers = cutoff layers ``start_layer..num_hidden_layers``."""

    kind = "layerwise"

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        device: str = "cpu",
        use_fp16: bool = False,
        prompt: str | None = None,
        **options,
    ):
        super().__init__(name, model_path, max_length=max_length, batch_size=batch_size, **options)
        if getattr(self, "long_documents", "truncate") != "truncate":
            raise ValueError(
                f"reranker {name!r}: the layerwise backend truncates long documents (its input is the "
                f"library's prompt format); long_documents {self.long_documents!r} is not supported"
            )
        import warnings

        from FlagEmbedding import LayerWiseFlagLLMReranker

        _adapt_to_transformers5()
        with warnings.catch_warnings():
            # "use_bf16 and use_fp16 cannot both be False": the library then means fp16 on a GPU only.
            warnings.simplefilter("ignore", UserWarning)
            self.flag = LayerWiseFlagLLMReranker(
                model_path,
                use_fp16=use_fp16,
                devices=[device],
                batch_size=batch_size,
                max_length=max_length,
                prompt=prompt,
            )
        self.device = torch.device(device)
        self.model = self.flag.model
        self.model.config.use_cache = False  # no generation: and the cache path is transformers-4 only
        _rebuild_rotary_tables(self.model)
        self.model.to(self.device)
        if use_fp16 and self.device.type != "cpu":
            self.model.half()
        self.model.eval()
        config = self.model.config
        if getattr(config, "head_type", "simple") != "simple":
            raise ValueError(
                f"reranker {name!r}: head_type {config.head_type!r}; the layerwise reranker scores with 'simple' heads"
            )
        self.start_layer = int(config.start_layer)
        self.exit_layers = list(range(self.start_layer, int(config.num_hidden_layers) + 1))
        self.tokenizer = self.flag.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPT
        self._prompt_ids = self.tokenizer(self.prompt, add_special_tokens=False)["input_ids"]
        self._sep_ids = self.tokenizer("\n", add_special_tokens=False)["input_ids"]

    def _bad_layer_message(self, layer) -> str:
        return (
            f"reranker {self.name!r} has no cutoff layer {layer!r}; its cutoff layers are "
            f"{self.start_layer}..{self.max_layer}"
        )

    # ------------------------------------------------------------ input
    def encode(self, query: str, documents: Sequence[str]) -> EncodedPairs:
        """Pairs as ``LayerWiseFlagLLMReranker.compute_score`` builds them."""
        from FlagEmbedding.utils.tokenizer_compat import prepare_for_model_compat

        if not documents:
            return EncodedPairs.empty()
        query_max = self.max_length * 3 // 4
        encode_max = self.max_length + len(self._sep_ids) + len(self._prompt_ids)
        # The library's instructions ("A: " before the query, "B: " before the passage).
        detailed = self.flag.get_detailed_inputs([[query, d] for d in documents])
        with self._tokenizer_lock:
            q = self.tokenizer(detailed[0][0], add_special_tokens=False, max_length=query_max, truncation=True)[
                "input_ids"
            ]
            whole = self.tokenizer([p for _, p in detailed], add_special_tokens=False)["input_ids"]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        ids, truncated = [], np.zeros(len(documents), dtype=bool)
        for i, doc in enumerate(whole):
            passage = doc[: self.max_length]
            item = prepare_for_model_compat(
                self.tokenizer,
                bos + q,
                self._sep_ids + passage,
                truncation="only_second",
                max_length=encode_max,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                add_special_tokens=False,
            )
            seq = list(item["input_ids"]) + self._sep_ids + self._prompt_ids
            truncated[i] = len(item["input_ids"]) < len(bos) + len(q) + len(self._sep_ids) + len(doc)
            ids.append(seq)
        return EncodedPairs(ids, truncated)

    # ------------------------------------------------------------ the model's steps
    def _pool(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last real token's logit (right padding)."""
        last = mask.sum(dim=1) - 1
        return logits[torch.arange(logits.shape[0], device=logits.device), last]

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Full depth through the library's forward (``cutoff_layers=[last]``)."""
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, attention_mask=mask, output_hidden_states=True, cutoff_layers=[self.max_layer]
            )
        return self._pool(out.logits[0], mask).float().cpu().numpy()

    def _mask_4d(self, hidden: torch.Tensor, mask: torch.Tensor):
        """The causal mask the library's forward builds for its attention implementation."""
        from FlagEmbedding.inference.reranker.decoder_only.models import modeling_minicpm_reranker as minicpm

        inner = self.model.model
        shape = tuple(mask.shape)
        if inner._use_flash_attention_2:
            return mask if 0 in mask else None
        if inner._use_sdpa:
            return minicpm._prepare_4d_causal_attention_mask_for_sdpa(mask, shape, hidden, 0)
        return minicpm._prepare_4d_causal_attention_mask(mask, shape, hidden, 0)

    def _run(self, state: _LayerwiseState, layer: int) -> tuple[torch.Tensor, _LayerwiseState]:
        inner = self.model.model
        hidden = state.hidden
        if layer > state.layer:
            mask4 = self._mask_4d(hidden, state.mask)
            positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
            for module in inner.layers[state.layer : layer]:
                hidden = module(
                    hidden,
                    attention_mask=mask4,
                    position_ids=positions,
                    past_key_value=None,
                    output_attentions=False,
                    use_cache=False,
                )[0]
        head = self.model.lm_head[layer - self.start_layer] if self.model.config.head_multi else self.model.lm_head
        logits = head.linear_head(inner.norm(hidden)).float().reshape(hidden.shape[0], -1)
        return self._pool(logits, state.mask), _LayerwiseState(layer, hidden, state.mask)

    def _start(self, input_ids, attention_mask, layer):
        inner = self.model.model
        embeds = inner.embed_tokens(input_ids) * self.model.config.scale_emb
        return self._run(_LayerwiseState(0, embeds, attention_mask), layer)

    def _resume(self, states, rows, width, layer):
        hidden, mask = gather_rows([s.hidden for s in states], [s.mask for s in states], rows, width)
        return self._run(_LayerwiseState(states[0].layer, hidden, mask), layer)

    def compute_score_plain(self, query: str, documents: list[str], cutoff_layer: int | None = None) -> np.ndarray:
        """``LayerWiseFlagLLMReranker.compute_score`` as commonly used (raw logits), for parity tests."""
        cutoff = self.check_layer(cutoff_layer if cutoff_layer is not None else self.max_layer)
        with self._lock:
            scores = self.flag.compute_score([[query, d] for d in documents], cutoff_layers=[cutoff], normalize=False)
        return np.atleast_1d(np.asarray(scores, dtype=np.float64))
