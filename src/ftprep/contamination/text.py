"""Normalisation, word tokens and n-gram shingles, vectorised over whole columns.

Every text goes through the same normalisation before any comparison: Unicode NFKC, lower
case, every run of characters that is neither a letter nor a digit replaced by a space, and
whitespace collapsed. Words are then mapped to stable 64-bit hashes (BLAKE2b of the word), so
the same word has the same hash in every run and every dataset.

A batch of texts becomes one :class:`Tokens` object: a flat ``uint64`` array of word hashes
plus CSR ``offsets`` (text ``i`` owns ``ids[offsets[i]:offsets[i+1]]``). Word n-grams are
hashed with a polynomial over the word hashes followed by a 64-bit finaliser; an n-gram never
spans two texts. All of this runs in pyarrow / numpy, not in a Python loop per word.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NON_WORD = r"[^\p{L}\p{N}]+"
_U64 = np.uint64
_POLY = _U64(0x9E3779B97F4A7C15)


@dataclass(slots=True)
class Tokens:
    """Word hashes of many texts in CSR form."""

    ids: np.ndarray  # uint64 word hashes, all texts concatenated
    offsets: np.ndarray  # int64, len = n_texts + 1
    chars: np.ndarray | None = None  # uint8 length in characters of every word (capped at 255)

    @property
    def n_texts(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def owner(self) -> np.ndarray:
        """Text index of every word."""
        return np.repeat(np.arange(self.n_texts, dtype=np.int64), self.lengths)

    def take(self, rows: np.ndarray) -> Tokens:
        """The tokens of texts ``rows`` (in that order)."""
        lo = self.offsets[rows]
        cnt = self.offsets[rows + 1] - lo
        pos = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        pos += np.repeat(lo, cnt)
        chars = self.chars[pos] if self.chars is not None else None
        return Tokens(self.ids[pos], np.r_[0, np.cumsum(cnt)].astype(np.int64), chars)


def _ascii_lut() -> np.ndarray:
    lut = np.full(256, ord(" "), dtype=np.uint8)
    for c in range(128):
        ch = chr(c)
        if ch.isalnum():
            lut[c] = ord(ch.lower())
    lut[128:] = np.arange(128, 256, dtype=np.uint8)  # UTF-8 continuation/lead bytes untouched
    return lut


_LUT = _ascii_lut()


def normalize_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lower case with every non-alphanumeric character replaced by a space (a pyarrow
    ``large_string`` array; runs of spaces are not collapsed, :func:`tokenize` splits on them).

    Pure-ASCII rows go through a 256-entry byte lookup table over the whole data buffer; only
    the other rows pay for NFKC, Unicode lower-casing and the ``[^\\p{L}\\p{N}]`` regex."""
    arr = (
        texts
        if isinstance(texts, pa.Array | pa.ChunkedArray)
        else pa.array(list(texts), pa.large_string())
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lo, hi = int(offsets[0]) if n else 0, int(offsets[-1]) if n else 0
    mapped = _LUT[data[lo:hi]]
    out = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets - lo), pa.py_buffer(mapped))
    non_ascii = pc.invert(pc.string_is_ascii(arr))
    if (pc.sum(non_ascii).as_py() or 0) > 0:
        sub = pc.filter(arr, non_ascii)
        sub = pc.utf8_lower(pc.utf8_normalize(sub, "NFKC"))
        sub = pc.replace_substring_regex(sub, _NON_WORD, " ")
        out = pc.replace_with_mask(out, non_ascii, sub)
    return out


def normalize(text: str) -> str:
    """The normalisation of one text, with whitespace collapsed."""
    return " ".join(str(normalize_array([text])[0].as_py()).split())


def _word_hashes(words: list[str]) -> np.ndarray:
    out = np.empty(len(words), dtype=_U64)
    for i, w in enumerate(words):
        out[i] = int.from_bytes(
            hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
        )
    return out


def tokenize(texts: Sequence[str] | pa.Array, *, normalized: bool = False) -> Tokens:
    """Normalise (unless ``normalized``) and split ``texts`` into word hashes."""
    norm = texts if normalized and isinstance(texts, pa.Array) else normalize_array(texts)
    lists = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(norm))
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    flat = lists.flatten()
    if len(flat) == 0:
        return Tokens(np.zeros(0, _U64), offsets)
    enc = pc.dictionary_encode(flat)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    table = _word_hashes(enc.dictionary.to_pylist())
    dlen = np.minimum(np.asarray(pc.utf8_length(enc.dictionary), dtype=np.int64), 255)
    idx = np.asarray(enc.indices, dtype=np.int64)
    return Tokens(table[idx], offsets, dlen.astype(np.uint8)[idx])


def text_keys(tokens: Tokens) -> np.ndarray:
    """One 64-bit key per text from its whole word sequence (equal normalised texts, equal
    keys; 0 for an empty text)."""
    n = tokens.n_texts
    out = np.zeros(n, dtype=_U64)
    if len(tokens.ids) == 0:
        return out
    lengths = tokens.lengths
    pos = np.arange(len(tokens.ids), dtype=np.int64) - np.repeat(tokens.offsets[:-1], lengths)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(int(lengths.max()), _POLY, dtype=_U64)) * _U64(1)
        terms = fmix64(tokens.ids + _U64(0x632BE59BD9B4E019)) * powers[pos]
    nonempty = np.flatnonzero(lengths > 0)
    sums = np.add.reduceat(terms, tokens.offsets[nonempty])
    out[nonempty] = fmix64(sums ^ lengths[nonempty].astype(_U64)) | _U64(1)
    return out


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser (a bijection that spreads every input bit)."""
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _inverse_u64(a: int) -> int:
    """The inverse of an odd number modulo 2**64 (Newton's iteration)."""
    x = a
    for _ in range(6):
        x = (x * (2 - a * x)) % (1 << 64)
    return x


_POLY_INV = _U64(_inverse_u64(int(_POLY)))


def _window_poly(ids: np.ndarray, n: int) -> np.ndarray:
    """``sum(ids[i + k] * POLY**(n - 1 - k) for k < n)`` (mod 2**64) for every start ``i``:
    Horner's rule for small ``n``; for larger ``n`` prefix sums of ``ids[j] * POLY**-j``
    (POLY is odd, so invertible modulo 2**64): ``POLY**(i + n - 1) * (C[i + n - 1] - C[i - 1])``,
    the same values in a fixed number of passes instead of ``2n``."""
    m = len(ids) - n + 1
    with np.errstate(over="ignore"):
        if n <= 4:
            h = np.zeros(m, dtype=_U64)
            for k in range(n):
                h = h * _POLY + ids[k : k + m]
            return h
        pw = np.empty(len(ids), dtype=_U64)
        pw[0] = 1
        pw[1:] = _POLY_INV
        np.cumprod(pw, out=pw)
        c = np.empty(len(ids) + 1, dtype=_U64)
        c[0] = 0
        np.multiply(ids, pw, out=c[1:])
        np.cumsum(c, out=c)
        h = c[n:] - c[:m]
        pw[0] = _POLY ** _U64(n - 1)
        pw[1:] = _POLY
        np.cumprod(pw, out=pw)
        h *= pw[:m]
    return h


def ngram_hashes(
    tokens: Tokens, n: int, *, short: bool = False, min_chars: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word ``n``-gram and the text each belongs to (``owner``, nondecreasing).

    ``min_chars`` keeps only informative n-grams: at least one word of ``min_chars``
    characters or more (so "a 1 2 3" option lists and bare digits carry no evidence).

    ``short=True`` also gives a text with 1..n-1 words one shingle: the hash of all its words
    (so a very short question still has a fingerprint). The same word sequence always hashes
    the same, whichever text it comes from.
    """
    ids, off = tokens.ids, tokens.offsets
    total = len(ids)
    lengths = tokens.lengths
    parts_h: list[np.ndarray] = []
    parts_o: list[np.ndarray] = []
    if total >= n:
        m = total - n + 1
        h = _window_poly(ids, n)
        starts = np.arange(m, dtype=np.int64)
        owner = tokens.owner()[:m]
        valid = starts + n <= off[1:][owner]
        if min_chars > 0 and tokens.chars is not None:
            mx = tokens.chars[:m].copy()
            for k in range(1, n):
                np.maximum(mx, tokens.chars[k : k + m], out=mx)
            valid &= mx >= min_chars
        parts_h.append(fmix64(h[valid] ^ _U64(n)))
        parts_o.append(owner[valid])
    if short:
        small = np.nonzero((lengths > 0) & (lengths < n))[0]
        if len(small):
            hs = np.empty(len(small), dtype=_U64)
            with np.errstate(over="ignore"):
                for j, t in enumerate(small):
                    acc = _U64(0)
                    for w in ids[off[t] : off[t + 1]]:
                        acc = acc * _POLY + w
                    hs[j] = acc
            parts_h.append(fmix64(hs ^ _U64(n)))
            parts_o.append(small.astype(np.int64))
    if not parts_h:
        return np.zeros(0, _U64), np.zeros(0, np.int64)
    h_all = np.concatenate(parts_h)
    o_all = np.concatenate(parts_o)
    if len(parts_h) > 1:
        order = np.argsort(o_all, kind="stable")
        h_all, o_all = h_all[order], o_all[order]
    return h_all, o_all


# ----------------------------------------------------------------------------- verifier features
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "half": "0.5",
    "twice": "2",
    "thrice": "3",
    "double": "2",
    "triple": "3",
    "dozen": "12",
    "quarter": "0.25",
    "once": "1",
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def numbers(text: str) -> set[str]:
    """The numbers a text mentions (digits, with 1,000 = 1000; number words as digits)."""
    out = {m.group().replace(",", "").rstrip(".").lstrip("0") or "0" for m in _NUM.finditer(text)}
    for w in _WORD.findall(text.lower()):
        if w in NUMBER_WORDS:
            out.add(NUMBER_WORDS[w])
    return out


def char_ngram_hashes(
    texts: Sequence[str] | pa.Array, n: int, *, normalized: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character ``n``-gram of the normalised texts with all spaces removed
    (so a word swap or a typo changes only the few grams around it) and the text each belongs
    to (``owner``, nondecreasing). UTF-8 bytes; a gram never spans two texts."""
    norm = texts if normalized and isinstance(texts, pa.Array) else normalize_array(texts)
    if isinstance(norm, pa.ChunkedArray):
        norm = norm.combine_chunks()
    k = len(norm)
    bufs = norm.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[norm.offset : norm.offset + k + 1]
    if bufs[2] is None or k == 0:
        return np.zeros(0, _U64), np.zeros(0, np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    owner = np.repeat(np.arange(k, dtype=np.int64), np.diff(offsets))
    keep = data != ord(" ")
    data, owner = data[keep], owner[keep]
    m = len(data) - n + 1
    if m <= 0:
        return np.zeros(0, _U64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=_U64)
        for j in range(n):
            h = h * _U64(0x100000001B3) + data[j : j + m].astype(_U64)
    valid = owner[:m] == owner[n - 1 :]
    return fmix64(h[valid] ^ _U64(0xC0FFEE00 + n)), owner[:m][valid]


def unique(
    x: np.ndarray,
    *,
    return_index: bool = False,
    return_inverse: bool = False,
    return_counts: bool = False,
) -> Any:
    """Sorted distinct values of a 1-D array, optionally with the first index of each, the
    inverse and the counts: the same results as ``np.unique``, by one (stable) sort. numpy
    2.4's hash-based ``np.unique`` is about 100x slower on millions of integers."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="stable") if (return_index or return_inverse) else None
    s = x[order] if order is not None else np.sort(x)
    flag = np.empty(len(s), dtype=bool)
    if len(s):
        flag[0] = True
        np.not_equal(s[1:], s[:-1], out=flag[1:])
    out: list[np.ndarray] = [s[flag]]
    if return_index:
        assert order is not None
        out.append(order[flag])
    if return_inverse:
        assert order is not None
        inv = np.empty(len(x), dtype=np.int64)
        inv[order] = np.cumsum(flag) - 1
        out.append(inv)
    if return_counts:
        out.append(np.diff(np.r_[np.flatnonzero(flag), len(s)]))
    return out[0] if len(out) == 1 else tuple(out)


def isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.isin(a, b)`` by a sorted search (no hash table)."""
    a = np.asarray(a)
    if len(b) == 0 or len(a) == 0:
        return np.zeros(a.shape, dtype=bool)
    sb = np.sort(np.asarray(b).ravel())
    pos = np.minimum(np.searchsorted(sb, a), len(sb) - 1)
    return sb[pos] == a
