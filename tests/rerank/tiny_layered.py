"""Tiny models for the layered rerank backends, built at test time (no hub, no download).

* :func:`build_tiny_bert_reranker` - a ``BertForSequenceClassification`` (hidden 32, 6
  layers, one label) with a WordPiece ``BertTokenizer`` whose vocabulary holds the English
  words of :data:`tests.tiny_models.WORDS` and a few hundred Chinese characters, so Chinese
  and mixed text become real tokens (BERT splits CJK text into single characters): the
  layout of the project's MiniLM-L6 reranker, at 6 layers so exits at 2, 4 and 6 exist.
* :func:`build_tiny_layerwise` - FlagEmbedding's ``LayerWiseMiniCPMForCausalLM`` (hidden 32,
  4 layers, heads from layer 2: cutoff layers 2..4), the layout of
  ``BAAI/bge-reranker-v2-minicpm-layerwise`` (config.json with model_type ``minicpm``,
  model.safetensors, tokenizer files), with the XLM-R tokenizer of tests/tiny_models.py
  (bos ``<s>``). Weights go through safetensors directly: the library's model class cannot
  ``save_pretrained`` under transformers 5 (its ``_tied_weights_keys`` is a list).

Random seeded weights: test properties, never golden numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_models import SEED, WORDS, _build_atomically, _has_model, build_tokenizer

BERT_LAYERS = 6
LAYERWISE_LAYERS = 4
LAYERWISE_START = 2

# Common Chinese characters (and the ones the tests' sentences use).
_HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
    "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外"
    "但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第"
    "门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报"
    "立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共"
    "风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条"
    "院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写"
    "呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若"
    "蛋白质基因细胞癌症肿瘤表达蛋疫苗病毒感染免疫药物治疗患者临床研究检索排序查询文档模型园，。、？！：；"
)
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_vocab() -> list[str]:
    seen, vocab = set(), []
    for token in (
        _BERT_SPECIALS + WORDS + list(".,;:!?'\"()-/%") + list("abcdefghijklmnopqrstuvwxyz0123456789") + list(_HANZI)
    ):
        if token not in seen:
            seen.add(token)
            vocab.append(token)
    # Word pieces, so any lower-case ASCII word tokenizes without [UNK].
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return vocab


def _write_bert_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(_bert_vocab())}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=512,
    ).save_pretrained(str(directory))


def _write_bert_reranker(directory: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    _write_bert_tokenizer(directory)
    config = BertConfig(
        vocab_size=len(_bert_vocab()),
        hidden_size=32,
        num_hidden_layers=BERT_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=2,
        initializer_range=0.2,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        num_labels=1,
        pad_token_id=0,
        architectures=["BertForSequenceClassification"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 7)
        model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(directory))


def build_tiny_bert_reranker(directory) -> Path:
    """A tiny 6-layer BERT cross-encoder with a Chinese-aware tokenizer (idempotent)."""
    directory = Path(directory)
    if not _has_model(directory):
        _build_atomically(directory, _write_bert_reranker, last=("model.safetensors",))
    return directory


def tiny_bert_with_exits(cache, target, exits) -> Path:
    """A copy of the tiny BERT (built once under ``cache``) in ``target``, with untrained exit
    heads after ``exits``: its own directory, since the heads are written into it."""
    import shutil

    from hybridsearch.rerank.early_exit import add_exit_heads

    plain = build_tiny_bert_reranker(Path(cache) / "tiny-bert-reranker")
    shutil.copytree(plain, target)
    return add_exit_heads(Path(target), list(exits))


def _write_layerwise(directory: Path) -> None:
    import torch
    from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import (
        LayerWiseMiniCPMConfig,
    )
    from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import (
        LayerWiseMiniCPMForCausalLM,
    )
    from safetensors.torch import save_file

    build_tokenizer(directory)
    vocab = len(json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    config = LayerWiseMiniCPMConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERWISE_LAYERS,
        num_attention_heads=2,
        max_position_embeddings=512,
        start_layer=LAYERWISE_START,
        head_multi=True,
        head_type="simple",
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=0.2,
        scale_emb=1,
        dim_model_base=1,
        scale_depth=1.4,
        architectures=["LayerWiseMiniCPMForCausalLM"],
    )
    config.save_pretrained(str(directory))
    # Build with the RoPE settings read as "none" and no tied embeddings (the library's code
    # reads both the transformers 4 way); the saved config is the one above, which ties
    # embeddings as MiniCPM's config does by default (the heads have nothing to tie to).
    build_config = LayerWiseMiniCPMConfig.from_pretrained(str(directory))
    build_config.rope_scaling = None
    build_config.tie_word_embeddings = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 11)
        model = LayerWiseMiniCPMForCausalLM(build_config).eval()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(directory / "model.safetensors"),
        metadata={"format": "pt"},
    )


def build_tiny_layerwise(directory) -> Path:
    """A tiny LayerWise MiniCPM reranker, cutoff layers 2..4 (idempotent)."""
    directory = Path(directory)
    if not _has_model(directory):
        _build_atomically(directory, _write_layerwise, last=("model.safetensors",))
    return directory
