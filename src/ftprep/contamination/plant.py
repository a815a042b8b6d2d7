"""Planted leaks: light edits of a text, for measuring recall on one's own benchmarks.

``light_edit`` applies what a copy-paste-and-touch-up leak looks like: case and whitespace
changes, punctuation changes, a few typos (one character replaced, dropped or doubled) and a
few adjacent word swaps. ``bury`` hides a text inside unrelated material, the way a benchmark
question ends up inside a longer training record. Both are seeded and deterministic.
"""

from __future__ import annotations

import random
import string


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def light_edit(text: str, seed: int = 0, edit_rate: float = 0.05) -> str:
    """Typos and adjacent swaps on about ``edit_rate`` of the words (at least one edit), plus
    random case, whitespace and punctuation changes."""
    rng = random.Random(seed)
    words = text.split()
    if not words:
        return text
    n_edits = max(1, round(edit_rate * len(words)))
    for _ in range(n_edits):
        i = rng.randrange(len(words))
        if rng.random() < 0.5 and len(words) > 1:
            j = min(i + 1, len(words) - 1) if i + 1 < len(words) else i - 1
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = _typo(words[i], rng)
    style = rng.randrange(4)
    out = (" " if style != 1 else "  ").join(words)
    if style == 0:
        out = out.lower()
    elif style == 2:
        out = out.upper()
    if rng.random() < 0.5:
        out = out.replace(",", "").replace("?", " ?")
    if rng.random() < 0.5:
        out = out.rstrip(".?!") + "!"
    return out


def bury(text: str, before: str, after: str) -> str:
    """``text`` inside a longer record: unrelated material before and after it."""
    return f"{before.strip()}\n\n{text.strip()}\n\n{after.strip()}"
