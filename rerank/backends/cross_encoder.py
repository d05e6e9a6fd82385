"""A sentence-transformers CrossEncoder directory."""

from __future__ import annotations

import numpy as np
import torch

from hybridsearch.rerank.base import RerankBackend


def classification_logits(model, device: torch.device, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """One relevance logit per pair from a transformers sequence-classification model."""
    with torch.inference_mode():
        out = model(
            input_ids=torch.from_numpy(input_ids).to(device),
            attention_mask=torch.from_numpy(attention_mask).to(device),
            return_dict=True,
        )
    logits = out.logits
    # A two-label head (not relevant / relevant): the relevance logit is the margin.
    if logits.shape[-1] == 2:
        logits = logits[:, 1] - logits[:, 0]
    return logits.reshape(-1).float().cpu().numpy()


class CrossEncoderBackend(RerankBackend):
    kind = "cross-encoder"

    def __init__(
        self, name: str, model_path: str, *, max_length: int = 512, batch_size: int = 32, device: str = "cpu", **options
    ):
        # options: the long-document settings of RerankBackend (others are ignored there).
        super().__init__(name, model_path, max_length=max_length, batch_size=batch_size, **options)
        from sentence_transformers import CrossEncoder

        self.cross_encoder = CrossEncoder(model_path, device=device, max_length=max_length)
        self.tokenizer = self.cross_encoder.tokenizer
        # The underlying transformers sequence-classification model.
        self.model = self.cross_encoder.model
        self.model.eval()
        self.device = torch.device(device)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return classification_logits(self.model, self.device, input_ids, attention_mask)
