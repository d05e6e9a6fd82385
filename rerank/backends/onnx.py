"""ONNX Runtime backend: a transformers cross-encoder exported once, optionally int8-quantised."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from hybridsearch.rerank.base import RerankBackend

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INT8_PER_CHANNEL_FILE = "model.int8-per-channel.onnx"


def export_onnx(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    quantize: bool = False,
    opset: int = 17,
    output: str = "logits",
    per_channel: bool = False,
) -> Path:
    """Export a transformers directory to ONNX (once; reused after).

    ``output`` "logits": a sequence-classification model (cross-encoders); "last_hidden_state":
    the bare encoder (dense embedding models, pooled by the caller). Writes ``model.onnx``
    (and ``model.int8.onnx`` with dynamic int8 quantisation of the weights) into ``out_dir``
    (default ``<model_dir>/onnx``). Returns the file to load.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    out = Path(out_dir) if out_dir else Path(model_dir) / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / ONNX_FILE
    if not fp32.exists():
        loader = AutoModelForSequenceClassification if output == "logits" else AutoModel
        model = loader.from_pretrained(str(model_dir))
        model.eval()

        class OneOutput(torch.nn.Module):  # the exporter wants tensors in and one tensor out
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask):
                return getattr(self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=True), output)

        dummy = torch.ones((2, 8), dtype=torch.long)
        tmp = fp32.with_suffix(".tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript exporter needs no extra packages (the dynamo one needs onnxscript).
            torch.onnx.export(
                OneOutput(model),
                (dummy, dummy),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=[output],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    output: {0: "batch"} if output == "logits" else {0: "batch", 1: "seq"},
                },
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, fp32)
    if not quantize:
        return fp32
    # Per-channel scales keep MiniLM's sentence vectors at cosine 0.995 to fp32 (mean over
    # 128 SciFact abstracts; one scale per tensor: 0.936, min 0.90).
    int8 = out / (INT8_PER_CHANNEL_FILE if per_channel else INT8_FILE)
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_suffix(".tmp")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel)
        os.replace(tmp, int8)
    return int8


class OnnxBackend(RerankBackend):
    kind = "onnx"

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        quantize: bool = False,
        threads: int = 2,
        **options,
    ):
        # options: the long-document settings of RerankBackend (others are ignored there).
        super().__init__(name, model_path, max_length=max_length, batch_size=batch_size, **options)
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.onnx_file = export_onnx(model_path, quantize=quantize)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])
        self.name = name

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})
        if logits.ndim == 2 and logits.shape[-1] == 2:
            logits = logits[:, 1] - logits[:, 0]
        return np.asarray(logits, dtype=np.float64).reshape(-1)
