"""Tiny real-format models built at test time (no hub, no download).

The machines that build and test this project cannot reach a model hub, so the
tests build miniature models *in the real on-disk formats* and load them through
the real library code paths (FlagEmbedding's ``BGEM3FlagModel`` / ``FlagReranker``,
sentence-transformers' ``CrossEncoder``, ONNX export):

* :func:`build_tokenizer` - an XLM-RoBERTa tokenizer (``tokenizer.json`` with a
  SentencePiece-style Unigram model built from :data:`WORDS`), special tokens at
  the ids XLM-R uses (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, ``<mask>`` last).
* :func:`build_tiny_bge_m3` - an ``XLMRobertaModel`` (hidden 32, 2 layers) plus
  ``sparse_linear.pt`` and ``colbert_linear.pt``, the layout of ``BAAI/bge-m3``.
* :func:`build_tiny_reranker` - an ``XLMRobertaForSequenceClassification`` with
  one label, the layout of ``BAAI/bge-reranker-v2-m3``.

Weights are random (seeded) with ``initializer_range=0.2``; with the default 0.02
every text comes out as (almost) the same vector. Outputs are meaningless but
deterministic for one library version: test *properties*, never golden numbers
(the same seed gives different weights under transformers 4 and 5).

Builders are idempotent: if the target directory already holds the expected
files they return at once, so a session-scoped fixture can share one copy.
Importing this module is cheap; torch/transformers are imported inside builders.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

# Sizes shared by both tiny models.
HIDDEN_SIZE = 32
NUM_LAYERS = 2
NUM_HEADS = 2
INTERMEDIATE_SIZE = 64
MAX_POSITION_EMBEDDINGS = 514  # XLM-R: 512 tokens + padding_idx offset (pad id 1) + 1
INITIALIZER_RANGE = 0.2
SEED = 1234

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in XLM-R
MASK_TOKEN = "<mask>"  # last id, as in XLM-R
SPIECE_UNDERLINE = "\u2581"

# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------

_COMMON = """
the of and to in a is that for it as was with be by on not he i this are or his
from at which but have an they you were her she there one all we their has been
if more when will would who so no what can its about out them into than then
also only some other time could these two may first any my new now such like our
over most even made after many before must through back years where much your way
well down should because each just those how too very few between both under last
never same another while might being still without here again against three used
own off since around however without during high large small long short good best
better low higher lower increase increased decrease decreased change changes
effect effects result results show shows shown showed use using based level levels
study studies data analysis method methods model models test tests testing group
groups case cases rate rates risk factor factors role function functions type
types form forms process processes system systems number total mean across within
among per least both either whether do does did done make makes find found report
reported associated association compared comparison significant significantly
evidence support supports suggest suggests suggested observed observe treatment
treatments patient patients clinical trial trials control controls
"""

_SCIENCE = """
protein proteins expression expressed gene genes genetic genome genomic cell cells
cellular cancer cancers tumor tumors tumour tumour growth dna rna mrna mutation
mutations mutant receptor receptors enzyme enzymes activity activation inhibitor
inhibitors inhibition pathway pathways signaling signalling molecule molecular
binding bind binds acid acids amino sequence sequences tissue tissues blood
disease diseases infection infections virus viral bacteria bacterial immune
immunity antibody antibodies response responses drug drugs dose therapy therapies
mouse mice human humans rat rats animal animals brain neuron neurons neural heart
liver kidney lung lungs muscle bone skin stem membrane nucleus nuclear mitochondria
mitochondrial metabolism metabolic insulin glucose diabetes obesity vitamin
cholesterol lipid lipids fat inflammation inflammatory stress oxidative apoptosis
death survival age aging children women men adults population mortality
vaccine vaccines covid coronavirus sars influenza hiv malaria tuberculosis
chemistry physics biology energy temperature pressure water carbon oxygen
hydrogen nitrogen iron calcium sodium potassium zinc ion ions electron electrons
atom atoms mass light laser quantum field fields force particle particles wave
waves structure structures surface material materials chemical reaction
reactions concentration solution samples sample measurement measurements
experiment experiments experimental theory theoretical network networks learning
machine neural deep computer algorithm algorithms search retrieval query queries
document documents text language semantic vector vectors dense sparse score
scores rank ranking index database information science scientific research
"""

_PUNCT = list(".,;:!?'\"()[]{}-_/\\%&*+=<>@#$^`|~")
_LETTERS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = list("0123456789")
_SUFFIXES = ["s", "es", "ed", "ing", "ly", "er", "ers", "ion", "ions", "al", "ity", "ness", "ment"]


def _dedupe(seq):
    seen = set()
    out = []
    for item in seq:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


#: The word list the tokenizer's vocabulary is built from (lower case; each word
#: also gets a capitalised variant so "Protein" is one piece, like "protein").
WORDS: list[str] = _dedupe((_COMMON + " " + _SCIENCE).split())


def _unigram_vocab() -> list[tuple[str, float]]:
    """(piece, log-prob) pairs: specials, whole words, suffixes, characters.

    Whole words score highest so Viterbi keeps them in one piece; every printable
    ASCII character exists both word-initially ("\u2581x") and word-internally
    ("x"), so any ASCII text tokenizes without ``<unk>``.
    """
    vocab: list[tuple[str, float]] = [(tok, 0.0) for tok in SPECIAL_TOKENS]
    pieces: list[tuple[str, float]] = []
    for rank, word in enumerate(WORDS):
        score = -4.0 - rank / 1000.0  # earlier words slightly more likely
        pieces.append((SPIECE_UNDERLINE + word, score))
        pieces.append((SPIECE_UNDERLINE + word.capitalize(), score - 0.5))
    for suffix in _SUFFIXES:
        pieces.append((suffix, -7.0))
    for ch in _LETTERS + _DIGITS + _PUNCT:
        pieces.append((SPIECE_UNDERLINE + ch, -9.0))
        pieces.append((ch, -10.0))
    pieces.append((SPIECE_UNDERLINE, -11.0))
    seen = set(SPECIAL_TOKENS) | {MASK_TOKEN}
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    vocab.append((MASK_TOKEN, 0.0))
    return vocab


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _has_files(directory: Path, names) -> bool:
    return all((directory / name).is_file() for name in names)


def _build_backend_tokenizer():
    """A ``tokenizers.Tokenizer`` shaped like the one transformers builds for XLM-R.

    Same components as ``XLMRobertaTokenizer`` (transformers 5) reconstructs from a
    tokenizer.json (Unigram, WhitespaceSplit + Metaspace pre-tokenizer, Metaspace
    decoder, ``<s> A </s></s> B </s>`` template), so loading through AutoTokenizer
    gives the same tokenization under transformers 4 (which reads tokenizer.json
    as is) and 5 (which rebuilds the pipeline around the stored vocab).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = _unigram_vocab()
    tok = Tokenizer(Unigram(vocab=vocab, unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
        + [AddedToken(MASK_TOKEN, special=True, normalized=False, lstrip=True)]
    )
    return tok


def _write_tokenizer(directory: Path) -> None:
    from transformers import XLMRobertaTokenizerFast

    hf_tok = XLMRobertaTokenizerFast(
        tokenizer_object=_build_backend_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=MASK_TOKEN,
        model_max_length=512,
    )
    hf_tok.save_pretrained(str(directory))


def build_tokenizer(directory: PathLike) -> Path:
    """Write an XLM-R-compatible fast tokenizer to ``directory``; return the path.

    ``AutoTokenizer.from_pretrained(directory)`` loads it as
    ``XLMRobertaTokenizer`` (transformers 5) / ``XLMRobertaTokenizerFast`` (4).
    Idempotent.
    """
    directory = Path(directory)
    if _has_files(directory, _TOKENIZER_FILES):
        return directory
    _build_atomically(directory, _write_tokenizer, last=("tokenizer_config.json",))
    return directory


@contextlib.contextmanager
def _quiet_progress_bars():
    """Silence transformers' "Writing model shards" bar while saving."""
    try:
        from transformers.utils import logging as hf_logging
    except Exception:  # pragma: no cover
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _build_atomically(directory: Path, write: Callable[[Path], None], last=()) -> None:
    """Run ``write(tmp)`` in a sibling temp dir, then move the files into ``directory``.

    Files named in ``last`` are moved last, so a concurrent ``_has_*`` check (which
    requires them) only succeeds once everything else is in place. Safe when
    several processes (pytest-xdist workers) build into the same directory: each
    file lands whole via ``os.replace``.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=str(directory.parent)))
    try:
        with _quiet_progress_bars():
            write(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in tmp.iterdir())
        names = [n for n in names if n not in last] + [n for n in last if n in names]
        for name in names:
            os.replace(tmp / name, directory / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def _tiny_config(vocab_size: int, **extra):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        intermediate_size=INTERMEDIATE_SIZE,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        type_vocab_size=1,
        initializer_range=INITIALIZER_RANGE,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **extra,
    )


def _vocab_size(directory: Path) -> int:
    data = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    return len(data["model"]["vocab"])


_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def _has_model(directory: Path, extra=()) -> bool:
    return _has_files(directory, ("config.json",) + _TOKENIZER_FILES + tuple(extra)) and any(
        (directory / n).is_file() for n in _WEIGHT_NAMES
    )


def build_tiny_bge_m3(directory: PathLike) -> Path:
    """Build a tiny BGE-M3 look-alike in ``directory`` (idempotent); return the path.

    Layout as in ``BAAI/bge-m3``: config.json + model.safetensors of an
    ``XLMRobertaModel``, the tokenizer files, ``sparse_linear.pt`` (state dict of
    ``Linear(hidden, 1)``) and ``colbert_linear.pt`` (``Linear(hidden, hidden)``).
    ``BGEM3FlagModel(str(path), use_fp16=False, devices="cpu")`` loads it; dense
    vectors are 32-d.
    """
    directory = Path(directory)
    if _has_model(directory, ("sparse_linear.pt", "colbert_linear.pt")):
        return directory
    _build_atomically(directory, _write_bge_m3, last=_WEIGHT_NAMES)
    return directory


def _write_bge_m3(directory: Path) -> None:
    import torch
    from transformers import XLMRobertaModel

    _write_tokenizer(directory)
    config = _tiny_config(_vocab_size(directory), architectures=["XLMRobertaModel"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = XLMRobertaModel(config).eval()
        colbert = torch.nn.Linear(HIDDEN_SIZE, HIDDEN_SIZE)
        sparse = torch.nn.Linear(HIDDEN_SIZE, 1)
        with torch.no_grad():
            # relu(sparse(h)) is the token weight; a positive bias keeps most
            # tokens' weights above zero (a random one would zero out half).
            sparse.bias.fill_(1.0)
    torch.save(colbert.state_dict(), directory / "colbert_linear.pt")
    torch.save(sparse.state_dict(), directory / "sparse_linear.pt")
    model.save_pretrained(str(directory))


def build_tiny_reranker(directory: PathLike) -> Path:
    """Build a tiny cross-encoder in ``directory`` (idempotent); return the path.

    Layout as in ``BAAI/bge-reranker-v2-m3``: an
    ``XLMRobertaForSequenceClassification`` with ``num_labels=1`` and the
    tokenizer files. Loads with ``FlagReranker(str(path), use_fp16=False,
    devices="cpu")`` and ``sentence_transformers.CrossEncoder(str(path))``.
    """
    directory = Path(directory)
    if _has_model(directory):
        return directory
    _build_atomically(directory, _write_reranker, last=_WEIGHT_NAMES)
    return directory


def _write_reranker(directory: Path) -> None:
    import torch
    from transformers import XLMRobertaForSequenceClassification

    _write_tokenizer(directory)
    config = _tiny_config(
        _vocab_size(directory),
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 1)
        model = XLMRobertaForSequenceClassification(config).eval()
    model.save_pretrained(str(directory))


def export_reranker_onnx(model_dir: PathLike, onnx_path: PathLike, opset: int = 17) -> Path:
    """Export the tiny reranker to ONNX (inputs input_ids/attention_mask, output logits).

    Uses the TorchScript exporter (``dynamo=False``), which needs no extra package;
    the dynamo exporter (torch's default since 2.9) needs ``onnxscript``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    onnx_path = Path(onnx_path)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    enc = tok([["a query", "a document text"], ["q", "doc"]], padding=True, return_tensors="pt")

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    axes = {0: "batch", 1: "seq"}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # TracerWarnings about shape checks in transformers' mask code that are
        # constant for an encoder, and a note on aten::index; both harmless here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Wrapper(model),
            (enc["input_ids"], enc["attention_mask"]),
            str(onnx_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return onnx_path


__all__ = [
    "WORDS",
    "HIDDEN_SIZE",
    "build_tokenizer",
    "build_tiny_bge_m3",
    "build_tiny_reranker",
    "export_reranker_onnx",
]
