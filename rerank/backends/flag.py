"""FlagEmbedding's FlagReranker (the default: BAAI/bge-reranker-v2-m3)."""

from __future__ import annotations

import numpy as np
import torch

from hybridsearch.rerank.base import RerankBackend


class FlagRerankerBackend(RerankBackend):
    """Loads through ``FlagReranker``; scores through the shared batched path.

    ``compute_score`` tokenises on every call and, on its first batch, runs a
    batch-size probe that scores the batch twice. The service tokenises once
    (it needs the token counts for cost anyway) and runs the same model on
    length-sorted, per-batch-padded inputs. ``compute_score_plain`` keeps the
    library's own path for parity tests and the throughput benchmark.
    """

    kind = "flag"

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        use_fp16: bool = False,
        device: str = "cpu",
        **options,
    ):
        # options: the long-document settings of RerankBackend (others are ignored there).
        super().__init__(name, model_path, max_length=max_length, batch_size=batch_size, **options)
        from FlagEmbedding import FlagReranker

        # One device: with several FlagEmbedding starts a process pool.
        self.flag = FlagReranker(
            model_path, use_fp16=use_fp16, devices=[device], max_length=max_length, batch_size=batch_size
        )
        self.tokenizer = self.flag.tokenizer
        self.model = self.flag.model
        self.model.eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
                return_dict=True,
            )
        return out.logits.view(-1).float().cpu().numpy()

    def compute_score_plain(self, query: str, documents: list[str]) -> np.ndarray:
        """FlagReranker as commonly used: ``compute_score`` on the pairs, raw logits."""
        with self._lock:
            scores = self.flag.compute_score([[query, d] for d in documents], normalize=False)
        return np.atleast_1d(np.asarray(scores, dtype=np.float64))
