"""Token and surface-form features of input texts (no model, no language-specific word lists).

``tokens`` lower-cases and splits on word characters (Unicode-aware). ``surface_features``
computes the interpretable per-text features the shift test uses to *explain* a difference
between training and production: length, bracketed alternatives, placeholders, conditional
phrasing, questions, script/language, code, digits, upper case, URLs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ftprep.signals.patterns import PLACEHOLDER_PATTERNS, TEMPLATE_SLOT_PATTERNS, union_pattern

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

# [a/b], (a | b), {a or b}: two or more options inside one pair of brackets; [a] or [b],
# [a]/[b]: options in adjacent brackets
_BRACKET_ALT = re.compile(
    r"[\[(\{][^\[\](){}]{1,60}?(?:/|\||\bor\b)[^\[\](){}]{1,60}?[\])\}]"
    r"|\[[^\[\]]{1,60}\]\s*(?:/|\||\bor\b)\s*\[[^\[\]]{1,60}\]",
    re.I,
)
# template slots: the quality check's forgotten placeholders and the slot forms of templated
# or draft inputs ({name}, <client name>, [Party A], [●], ___, %s, $VAR…)
_PLACEHOLDER = re.compile(union_pattern(PLACEHOLDER_PATTERNS + TEMPLATE_SLOT_PATTERNS))
_CONDITIONAL = re.compile(
    r"\b(if|unless|provided that|in case|assuming|suppose|supposing|whether|otherwise|"
    r"would|could|should|might)\b",
    re.I,
)
_QUESTION_START = re.compile(
    r"^\s*(who|what|when|where|why|how|which|whose|whom|is|are|am|was|were|do|does|did|can|"
    r"could|will|would|should|shall|may|might|have|has|had)\b",
    re.I,
)
# code syntax, not the English words it borrows ("return this item", "import tax", "WHERE IS")
_CODE = re.compile(
    r"```|`[^`\n]+`|\bdef\s+\w+\s*\(|\bclass\s+\w+\s*[:(]|\bfunction\s*\w*\s*\("
    r"|^\s*(?:import\s+[\w.]+\s*$|from\s+[\w.]+\s+import\b)|\breturn\b[^\n]*;"
    r"|\bSELECT\b[^\n]*\bFROM\b|[{};]\s*$|=>|==|\(\)",
    re.M,
)
_URL = re.compile(r"https?://|www\.\S+|\S+@\S+\.\w+")


def has_slot_or_alternatives(text: str) -> bool:
    """The text holds a template slot or bracketed alternatives: surface forms the shift test
    names, so ``template.py`` never takes such a line out as a wrapper."""
    return bool(_PLACEHOLDER.search(text) or _BRACKET_ALT.search(text))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_sets(texts: Sequence[str]) -> list[set[str]]:
    return [set(tokens(t)) for t in texts]


_LONG_NUMBER = re.compile(r"\d{3,}")


def drop_long_numbers(texts: Sequence[str]) -> list[str]:
    """Runs of 3 or more digits taken out (order, ticket and account numbers, amounts, years):
    what such a number is says nothing about whether training covers the request ("order 48213"
    in production, "order 1007" in training), while as a token of its own it looks like
    vocabulary training lacks and moves a short input's embedding. Short numbers ("at 7",
    "2 adults") stay."""
    return [_without_long_numbers(t) if _LONG_NUMBER.search(t) else t for t in texts]


def _without_long_numbers(text: str) -> str:
    return " ".join(_LONG_NUMBER.sub(" ", text).split())


def distinct(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the first row of each distinct text (case, white space and long
    numbers ignored: "order 48213" and "order 50177" are one text, see
    :func:`drop_long_numbers`) and the distinct text of every row. A production log repeats its
    head queries, often with an order or ticket number in them; the comparisons with training
    count each text once."""
    index: dict[str, int] = {}
    inverse = np.fromiter(
        (index.setdefault(_without_long_numbers(t.lower()), len(index)) for t in texts),
        np.int64,
        len(texts),
    )
    first = np.zeros(len(index), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(texts) - 1, -1, -1)  # the earliest row of each
    return first, inverse


def doc_freq(sets: Sequence[set[str]]) -> Counter[str]:
    c: Counter[str] = Counter()
    for s in sets:
        c.update(s)
    return c


def _script_share(text: str) -> tuple[float, float]:
    """(share of letters outside ASCII, share of letters outside Latin scripts)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0, 0.0
    non_ascii = sum(1 for ch in letters if ord(ch) > 127)
    non_latin = sum(1 for ch in letters if ord(ch) > 0x24F)
    return non_ascii / len(letters), non_latin / len(letters)


# function words of the most common Latin-script languages: an input is in another language than
# English when it holds at least two of one list's words and more than twice as many as of English's
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the a an is are was to of and in for my i you it what how can do please on with "
        "this that me be have not your at from will there where when why which as so if or but "
        "get like",
        "es": "el la los las de del que y en un una es por para con mi mis no se lo cómo qué "
        "puedo quiero está hay al me su sus mi tengo necesito cuándo dónde",
        "fr": "le la les de des du et en un une est pour que qui je mon ma mes pas ne vous il "
        "dans sur avec au aux comment quel quelle puis-je veux suis",
        "de": "der die das und ist ich nicht ein eine zu mit den dem von für auf mein meine wie "
        "was bitte kann es sie wir ihr mir mich wo wann warum",
        "pt": "o os de do da dos das que e em um uma é para com não meu minha como por se eu "
        "posso quero está tem você",
        "it": "il lo gli le di che e è un una per con non mio mia come cosa sono ho posso "
        "voglio del della dei nel",
        "nl": "de het een en is van ik niet dat met voor op mijn hoe wat kan te zijn wil je naar",
    }.items()
}


def _other_language(tokens_: list[str]) -> bool:
    """The tokens read as a Latin-script language other than English (by function words)."""
    if len(tokens_) < 3:
        return False
    counts = {lang: sum(t in words for t in tokens_) for lang, words in _FUNCTION_WORDS.items()}
    lang = max(counts, key=lambda k: (counts[k], k == "en"))
    return lang != "en" and counts[lang] >= 2 and counts[lang] > 2 * counts["en"]


# name -> (kind, description); kind "binary" features are prevalence-filtered
SURFACE_FEATURES: dict[str, tuple[str, str]] = {
    "chars": ("numeric", "length in characters"),
    "words": ("numeric", "length in words"),
    "bracketed_alternatives": ("binary", "options in brackets, e.g. [a/b] or (x | y)"),
    "placeholders": ("binary", "template slots, e.g. {name}, <NAME>, [date], ___"),
    "conditional": ("binary", "conditional or hedged phrasing (if, unless, would, could…)"),
    "question": ("binary", "phrased as a question (ends with ? or starts with a question word)"),
    "statement": ("binary", "phrased as a statement or command (not a question)"),
    "non_ascii_letters": (
        "binary",
        "more than 20% of letters outside ASCII (accents, other languages)",
    ),
    "non_latin_script": ("binary", "more than 20% of letters outside Latin scripts"),
    "non_english": (
        "binary",
        "in a Latin-script language other than English (Spanish, French, German, Portuguese, "
        "Italian, Dutch; by function words)",
    ),
    "code": ("binary", "code (backticks, def / class / import syntax, SELECT … FROM, braces, ==)"),
    "digits": ("binary", "contains digits"),
    "upper_case": ("binary", "more than 30% of letters upper case"),
    "url_or_email": ("binary", "contains a URL or an e-mail address"),
    "multi_line": ("binary", "spans several lines"),
}


def surface_features(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-text feature columns (float64; binary features are 0/1)."""
    n = len(texts)
    out = {name: np.zeros(n, dtype=np.float64) for name in SURFACE_FEATURES}
    for i, t in enumerate(texts):
        t = t or ""
        words = len(t.split())
        out["chars"][i] = len(t)
        out["words"][i] = words
        out["bracketed_alternatives"][i] = bool(_BRACKET_ALT.search(t))
        out["placeholders"][i] = bool(_PLACEHOLDER.search(t))
        out["conditional"][i] = bool(_CONDITIONAL.search(t))
        q = t.rstrip().endswith("?") or bool(_QUESTION_START.match(t))
        out["question"][i] = q
        out["statement"][i] = not q
        na, nl = _script_share(t)
        out["non_ascii_letters"][i] = na > 0.2
        out["non_latin_script"][i] = nl > 0.2
        out["non_english"][i] = nl <= 0.2 and _other_language(tokens(t))
        out["code"][i] = bool(_CODE.search(t))
        out["digits"][i] = any(ch.isdigit() for ch in t)
        letters = [ch for ch in t if ch.isalpha()]
        out["upper_case"][i] = (
            bool(letters) and sum(ch.isupper() for ch in letters) / len(letters) > 0.3
        )
        out["url_or_email"][i] = bool(_URL.search(t))
        out["multi_line"][i] = "\n" in t.strip()
    return out
