"""Term counts of many texts at once, with CJK characters and bigrams hashed in numpy.

A Chinese character yields about 13x more terms than an English one (every character and
every bigram is a term), so a per-term Python step (slice, hash lookup, count) made the CJK
analyzers 6-8x slower per character than ``standard`` on English. Here the CJK runs of a
whole batch are hashed and counted in a few numpy passes, and each text's ``Counter`` is
built once. The hashes are exactly :func:`~engine.analysis.base.term_hash` of the same
strings (tests check it), so the terms, fingerprints and existing indexes do not change.

Why this is exact: CRC-32 is affine over GF(2) for messages of one length, so
``crc(m) = crc(0...0) ^ XOR_i T_i[m_i]`` with a 256-entry table per byte position. Every
BMP character from U+0800 up (all Han, kana and Hangul in the BMP) is three UTF-8 bytes,
so a unigram is a 3-byte and a bigram a 6-byte message, and per-code-point tables
(unigram; first and second character of a bigram) give a term's hash in one or two
lookups. Runs with supplementary-plane characters (Han extensions B-H) take the plain
path.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from hybridsearch.engine.analysis.base import _HASH_MASK

_BMP = 0x10000
_tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
_tables_lock = threading.Lock()


def _position_tables(length: int) -> tuple[int, np.ndarray]:
    """crc32 of ``length`` zero bytes, and T[i][v] = what byte value v at position i adds."""
    zero = zlib.crc32(bytes(length))
    table = np.empty((length, 256), dtype=np.uint32)
    for i in range(length):
        for v in range(256):
            msg = bytearray(length)
            msg[i] = v
            table[i, v] = zlib.crc32(msg) ^ zero
    return zero, table


def _code_point_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unigram, bigram first, bigram second) hash tables indexed by BMP code point; only
    entries from U+0800 (three UTF-8 bytes) are meaningful. Built once, about 10 ms."""
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                cp = np.arange(_BMP, dtype=np.uint32)
                b0 = 0xE0 | (cp >> 12)
                b1 = 0x80 | ((cp >> 6) & 0x3F)
                b2 = 0x80 | (cp & 0x3F)
                zero3, t3 = _position_tables(3)
                zero6, t6 = _position_tables(6)
                unigram = (zero3 ^ t3[0][b0 & 0xFF] ^ t3[1][b1] ^ t3[2][b2]).astype(np.uint32)
                first = (zero6 ^ t6[0][b0 & 0xFF] ^ t6[1][b1] ^ t6[2][b2]).astype(np.uint32)
                second = (t6[3][b0 & 0xFF] ^ t6[4][b1] ^ t6[5][b2]).astype(np.uint32)
                _tables = (unigram, first, second)
    return _tables


def run_hashes(
    runs: Sequence[str], owners: Sequence[int], *, bigrams: bool, unigrams: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Term hashes of CJK ``runs`` (BMP characters from U+0800 only) and the owner of each.

    ``bigrams``: overlapping character bigrams, as :func:`engine.analysis.scripts.bigrams`
    (a run of one character is its own unigram). ``unigrams``: every character too.
    """
    if not runs:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    unigram, first, second = _code_point_tables()
    # One string, runs separated by U+0000 (never inside a run), decoded to code points.
    cp = np.frombuffer("\0".join(runs).encode("utf-32-le"), dtype=np.uint32)
    lengths = np.fromiter(map(len, runs), dtype=np.int64, count=len(runs))
    owner = np.repeat(np.asarray(owners, dtype=np.int64), lengths + 1)[:-1]
    inside = cp != 0
    parts, part_owners = [], []
    if bigrams:
        pair = inside[:-1] & inside[1:]
        at = np.flatnonzero(pair)
        parts.append(first[cp[at]] ^ second[cp[at + 1]])
        part_owners.append(owner[at])
        if unigrams:
            single = inside
        else:
            # A run of one character: no neighbour inside the run on either side.
            lonely = inside.copy()
            lonely[:-1] &= ~pair
            lonely[1:] &= ~pair
            single = lonely
    else:
        single = inside if unigrams else np.zeros_like(inside)
    at = np.flatnonzero(single)
    parts.append(unigram[cp[at]])
    part_owners.append(owner[at])
    hashes = (np.concatenate(parts) & _HASH_MASK).astype(np.int64)
    return hashes, np.concatenate(part_owners)


def build_counters(
    n_texts: int,
    hashes: list[int],
    owners: list[int],
    array_hashes: Sequence[np.ndarray] = (),
    array_owners: Sequence[np.ndarray] = (),
    drop: np.ndarray | None = None,
) -> list[Counter[int]]:
    """One ``Counter`` per text from (hash, owner) pairs, given as Python lists (words
    hashed one by one) and numpy arrays (CJK runs); hashes in ``drop`` (stop words) removed
    from the array part only (the list part is filtered by string before hashing). Dropping
    by hash also drops a term whose 31-bit hash equals a stop word's: about one in 2^31 per
    term, and such a term already shares the stop word's index dimension."""
    out: list[Counter[int]] = [Counter() for _ in range(n_texts)]
    h = np.concatenate([np.asarray(hashes, dtype=np.int64), *array_hashes])
    o = np.concatenate([np.asarray(owners, dtype=np.int64), *array_owners])
    if drop is not None and drop.size and len(array_hashes):
        n_list = len(hashes)
        keep = np.ones(h.size, dtype=bool)
        keep[n_list:] = ~np.isin(h[n_list:], drop)
        h, o = h[keep], o[keep]
    if not h.size:
        return out
    keys, counts = np.unique((o << 31) | h, return_counts=True)
    key_owner = keys >> 31
    key_hash = (keys & _HASH_MASK).tolist()
    counts_l = counts.tolist()
    bounds = np.flatnonzero(np.diff(key_owner)) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), keys.size]
    for i, a, b in zip(key_owner[starts].tolist(), starts, ends, strict=True):
        # dict.update: Counter.update would add count by count in Python.
        dict.update(out[i], zip(key_hash[a:b], counts_l[a:b], strict=True))
    return out
