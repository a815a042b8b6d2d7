"""Deterministic criteria: vectorised text statistics and the built-in scorers.

A scorer takes a :class:`TextFrame` (the texts of one field plus cached statistics and the
prompts) and the criterion's ``params`` and returns :class:`Scored`: one score in ``[0, 1]`` per
example (1 = meets the criterion) and, for examples that fall short, a short evidence string
for the report and the decision detail. Regular expressions run through Arrow's RE2 kernels over
whole columns, so the scorers stay well above 5,000 examples/s on two cores.

Built-in scorers (``scorer:`` in ``rubric.yaml``; parameters in ``docs/quality.md``):
``length``, ``truncation``, ``placeholders``, ``boilerplate``, ``verbosity``, ``repetition``,
``refusal``, ``language``, ``readability``, ``json``, ``pattern``, ``echo``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ftprep.signals.patterns import PLACEHOLDER_PATTERNS, union_pattern

__all__ = ["SCORERS", "Scored", "TextFrame", "dense_features"]

TERMINAL = set(".!?\"'`)]}>*»”’…")
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "into",
        "onto",
        "than",
        "that",
        "which",
        "who",
        "whom",
        "whose",
        "whether",
        "if",
        "because",
        "while",
        "although",
        "though",
        "so",
        "such",
        "its",
        "their",
        "his",
        "her",
        "our",
        "your",
        "my",
        "this",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "not",
        "very",
        "more",
        "most",
        "less",
        "also",
        "then",
        "when",
        "where",
        "how",
        "what",
        "she",
        "he",
        "they",
        "we",
    ]
)
LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)]|[a-zA-Z][.)])\s")
CODE_HINT = re.compile(
    r"(?m)```|^\s*(?:def|return|for|while|if|print|class|import|function|var|let|const)\b"
    r"|[;{}]\s*$|\w\s*=\s*\S|<[a-z]+[ >]"
)
WORD_RE = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:'[A-Za-z]+)?")

# text that is there because a template or a mail client put it there
BOILERPLATE_PATTERNS = (
    r"(?i)\bas an ai(?: language)? model\b",
    r"(?i)\bas a large language model\b",
    r"(?i)\bi(?:'m| am) (?:just )?an ai\b",
    r"(?i)\bsent from my (?:iphone|ipad|android|mobile)\b",
    r"(?i)\b(?:this (?:e-?mail|message) (?:and any attachments )?(?:is|are|may be) confidential)",
    r"(?i)\bclick here to unsubscribe\b|\bunsubscribe\b",
    r"(?i)\bthis (?:message|response|email) (?:was|has been) (?:automatically )?generated\b",
    r"(?i)\bplease do not reply to this (?:e-?mail|message)\b",
    r"(?i)\b(?:disclaimer|legal notice):",
    r"(?i)\ball rights reserved\b",
    r"(?i)\bcopyright ©|\(c\) \d{4}\b",
    # support-desk stock phrases: house style when most examples have them (``max_doc_share``),
    # boilerplate when a minority does. Sign-offs ("Sincerely,") are left to the learned
    # template detector: a letter the prompt asked for legitimately ends with one.
    r"(?i)\bthank you for (?:contacting|reaching out to|choosing) (?:us|our)\b",
    r"(?i)\b(?:we|our team) will get back to you (?:shortly|soon|as soon as possible)\b",
    r"(?i)\b(?:customer (?:service|support|care)|support) team\s*$",
    r"(?i)\bthis (?:answer|response|content) (?:is|was) (?:provided|generated) (?:by|for)\b",
)
REFUSAL_PATTERNS = (
    r"(?i)^\W*(?:i'?m|i am) (?:sorry|afraid),? (?:but )?(?:i|as an)",
    r"(?i)^\W*(?:i|we) (?:cannot|can't|can not|won't|am unable to|am not able to) "
    r"(?:help|assist|provide|answer|comply|do that|fulfil|fulfill|create|generate|write)",
    r"(?i)^\W*(?:sorry|unfortunately),? (?:but )?(?:i|as an ai)",
    r"(?i)\bi (?:cannot|can't|am unable to|am not able to) (?:help|assist|comply) with (?:that|this)",
    r"(?i)\bas an ai(?: language)? model,? i (?:cannot|can't|don't|do not|am not)",
)
FILLER_PATTERNS = (
    r"(?i)\bit is (?:important|worth|essential|crucial) to (?:note|mention|remember|consider)\b",
    r"(?i)\bin conclusion\b",
    r"(?i)\b(?:overall|ultimately|in summary|to summarize|all in all),",
    r"(?i)\bneedless to say\b",
    r"(?i)\bat the end of the day\b",
    r"(?i)\bi hope this (?:helps|information|answer)\b",
    r"(?i)\b(?:feel free to|don't hesitate to) (?:ask|reach out|contact)\b",
    r"(?i)\blet me know if you (?:have|need)\b",
    r"(?i)\bas (?:previously|mentioned|stated) (?:mentioned|above|before|earlier)\b",
    r"(?i)\bfurthermore,|\bmoreover,|\badditionally,",
    r"(?i)\bin other words\b",
    r"(?i)\bit goes without saying\b",
)

# What kind of task a prompt sets, read from its first line (the instruction, not pasted input):
# *closed* tasks have one checkable answer (classification, extraction, conversion, calculation,
# editing); *open* tasks ask for free generation (writing, describing, brainstorming). Raters of
# correctness treat the two very differently, so the learned scorer gets both shares.
CLOSED_TASK_WORDS = [
    "classify",
    "categorize",
    "categorise",
    "identify",
    "name",
    "find",
    "convert",
    "translate",
    "calculate",
    "compute",
    "determine",
    "select",
    "choose",
    "rewrite",
    "edit",
    "correct",
    "extract",
    "count",
    "sort",
    "arrange",
    "rearrange",
    "spell",
    "replace",
    "fix",
    "paraphrase",
    "rephrase",
    "solve",
    "detect",
    "label",
    "match",
    "pick",
    "round",
    "multiply",
    "divide",
    "subtract",
    "transform",
    "simplify",
    "check",
    "verify",
    "decide",
    "predict",
    "assign",
    "evaluate",
    "which",
    "who",
    "when",
    "where",
]
OPEN_TASK_WORDS = [
    "generate",
    "create",
    "write",
    "compose",
    "design",
    "describe",
    "explain",
    "brainstorm",
    "suggest",
    "develop",
    "imagine",
    "discuss",
    "compare",
    "contrast",
    "analyze",
    "analyse",
    "elaborate",
    "construct",
    "invent",
    "propose",
    "outline",
    "draft",
    "formulate",
    "devise",
    "plan",
    "produce",
    "craft",
    "story",
    "poem",
    "essay",
    "article",
    "blog",
    "speech",
    "letter",
    "slogan",
    "song",
    "tips",
    "ideas",
    "ways",
]
HEDGE_WORDS = [
    "may",
    "might",
    "could",
    "possibly",
    "perhaps",
    "generally",
    "typically",
    "usually",
    "often",
    "likely",
    "depends",
    "various",
]


@dataclass
class Scored:
    scores: np.ndarray  # float64 in [0, 1], one per example
    details: dict[int, str] = field(default_factory=dict)  # evidence for examples below 1
    raw: np.ndarray | None = None  # the underlying measurement, when there is one


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def _ramp_down(x: np.ndarray, good: float, bad: float) -> np.ndarray:
    """1 at or below ``good``, 0 at or above ``bad``, linear between."""
    if bad <= good:
        return (x <= good).astype(float)
    return _clip01((bad - x) / (bad - good))


class TextFrame:
    """The texts a criterion looks at (``texts``) with their prompts, and statistics computed
    once and shared by every scorer (lengths, words, last line, corpus word counts…)."""

    def __init__(
        self,
        texts: Sequence[str],
        prompts: Sequence[str] | None = None,
        groups: Sequence[str | None] | None = None,
        strata: Sequence[str] | None = None,
    ) -> None:
        self.texts = [t or "" for t in texts]
        self.prompts = [p or "" for p in prompts] if prompts is not None else [""] * len(self.texts)
        self.groups = list(groups) if groups is not None else None  # e.g. area: length norms
        self.strata = list(strata) if strata is not None else None  # source|period: conventions
        self.arr = pa.array(self.texts, pa.string())
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    # --------------------------------------------------------------- vectorised statistics
    def count(self, pattern: str, ignore_case: bool = False) -> np.ndarray:
        def go() -> np.ndarray:
            r = pc.count_substring_regex(self.arr, pattern, ignore_case=ignore_case)
            return np.asarray(r.to_numpy(zero_copy_only=False), dtype=np.float64)

        return self.cached(f"count:{ignore_case}:{pattern}", go)  # type: ignore[no-any-return]

    def chars(self, char_class: str) -> np.ndarray:
        """How many characters of each text are in ``char_class`` (an RE2 class such as
        ``[A-Za-z]``): everything else is removed run by run and the rest measured, which is
        much faster than counting single-character matches."""

        def go() -> np.ndarray:
            neg = "[^" + char_class[1:] if char_class.startswith("[") else f"[^{char_class}]"
            kept = pc.replace_substring_regex(self.arr, neg + "+", "")
            return np.asarray(pc.utf8_length(kept).to_numpy(zero_copy_only=False), dtype=np.float64)

        return self.cached(f"chars:{char_class}", go)  # type: ignore[no-any-return]

    def matches(self, pattern: str, ignore_case: bool = False) -> np.ndarray:
        return self.count(pattern, ignore_case) > 0

    @property
    def n_chars(self) -> np.ndarray:
        return self.cached(
            "n_chars",
            lambda: np.asarray(
                pc.utf8_length(self.arr).to_numpy(zero_copy_only=False), dtype=np.float64
            ),
        )  # type: ignore[no-any-return]

    @property
    def n_words(self) -> np.ndarray:
        def go() -> np.ndarray:
            trimmed = pc.utf8_trim_whitespace(self.arr)
            n = pc.list_value_length(pc.utf8_split_whitespace(trimmed)).to_numpy(
                zero_copy_only=False
            )
            empty = pc.utf8_length(trimmed).to_numpy(zero_copy_only=False) == 0
            return np.where(empty, 0.0, np.asarray(n, dtype=np.float64))

        return self.cached("n_words", go)  # type: ignore[no-any-return]

    @property
    def n_lines(self) -> np.ndarray:
        return self.count(r"\n") + (self.n_chars > 0)

    @property
    def n_sentences(self) -> np.ndarray:
        return self.count(r"[.!?](?:\s|$)") + 0.0

    def words(self) -> list[list[str]]:
        return self.cached("words", lambda: [WORD_RE.findall(t.lower()) for t in self.texts])  # type: ignore[no-any-return]

    def word_counts(self) -> dict[str, int]:
        """How often each lower-cased word occurs in the whole frame (Arrow kernels)."""

        def go() -> dict[str, int]:
            if not len(self):
                return {}
            parts = pc.split_pattern_regex(pc.utf8_lower(self.arr), r"[^\p{L}']+")
            vc = pc.value_counts(pc.list_flatten(parts))
            return dict(
                zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
            )

        return self.cached("word_counts", go)  # type: ignore[no-any-return]

    def unterminated(self) -> np.ndarray:
        """Indices of texts that do not end (after trailing space) in final punctuation."""
        return self.cached(
            "unterminated",
            lambda: np.flatnonzero(  # type: ignore[no-any-return]
                self.matches(r"[^.!?\"'`)\]}>*»”’…\s]\s*$")
            ),
        )

    def dataset_median(self, values: np.ndarray, key: str) -> np.ndarray:
        """Per-example reference: the median of ``values`` within the example's group (e.g.
        area) when groups are given and large enough, else over the whole frame."""

        def go() -> np.ndarray:
            out = np.full(len(values), float(np.median(values)) if len(values) else 0.0)
            if self.groups is not None:
                g = np.asarray([x or "" for x in self.groups], dtype=object)
                for name in set(g.tolist()):
                    m = g == name
                    if name and m.sum() >= 50:
                        out[m] = float(np.median(values[m]))
            return out

        return self.cached(f"median:{key}", go)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ scorers


def score_length(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Hard bounds: ``min_words`` (default 1), ``max_words``, ``min_chars``, ``max_chars``.
    Below a minimum scores 0; above a maximum the score falls linearly to 0 at twice it."""
    words, chars = tf.n_words, tf.n_chars
    s = np.ones(len(tf))
    details: dict[int, str] = {}
    checks = (("min_words", words, "words"), ("min_chars", chars, "characters"))
    for key, val, unit in checks:
        lim = p.get(key, 1 if key == "min_words" else None)
        if lim is not None:
            bad = val < float(lim)
            s[bad] = 0.0
            for i in np.flatnonzero(bad)[:100000]:
                details[int(i)] = f"{int(val[i])} {unit} < {lim}"
    for key, val, unit in (("max_words", words, "words"), ("max_chars", chars, "characters")):
        lim = p.get(key)
        if lim is not None:
            lim = float(lim)
            sc = _ramp_down(val, lim, 2 * lim)
            s = np.minimum(s, sc)
            for i in np.flatnonzero(val > lim):
                details.setdefault(int(i), f"{int(val[i])} {unit} > {int(lim)}")
    return Scored(s, details, raw=words)


def score_truncation(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """The response stops before it is finished. Evidence, any of: it ends on a function word
    (``the``, ``and``, ``of``…) or a comma/colon/dash/open bracket; an odd number of code
    fences; its last paragraph contains finished sentences but ends without final punctuation;
    or it ends, without final punctuation, on a word fragment that occurs nowhere else in the
    data (a cut mid-word); or a one-line prose answer without final punctuation (titles,
    hashtags, formulas, code and lists excepted). The rules that read a missing final
    punctuation mark as evidence apply only when the data's own convention is to punctuate:
    at least ``convention_min`` (0.9) of one-line answers of ``convention_min_words`` (5)+
    words end in punctuation (95 % lower bound, best-punctuated source|period stratum, so a
    degraded stratum does not hide the convention of the others). Lists, poems and code whose lines never end in punctuation are
    left alone. ``min_last_words`` (default 4) is how long an unterminated last sentence must
    be; ``convention: false`` turns the convention rule off."""
    min_words = int(p.get("min_last_words", 4))
    rare_max = int(p.get("rare_fragment_count", 1))
    # word rarity only means something over enough text
    vocab = tf.word_counts() if p.get("fragments", True) and len(tf) >= 500 else None
    fences = tf.count(r"```")
    s = np.ones(len(tf))
    details: dict[int, str] = {}
    empty_item = np.flatnonzero(tf.matches(r"(?:^|\n)\s*(?:\d{1,3}[.)]|[-*•])\s*$"))
    # the data's own convention: do one-line answers of this length end in punctuation?
    conv_words = int(p.get("convention_min_words", 5))
    est = _punctuation_convention(tf, conv_words) if p.get("convention", True) else None
    punctuates = est is None or est >= float(p.get("convention_min", 0.9))
    conv = est if est is not None and punctuates else None
    todo = sorted(
        set(tf.unterminated().tolist())
        | set(np.flatnonzero(fences % 2 == 1).tolist())
        | set(empty_item.tolist())
    )
    empty_set = set(empty_item.tolist())
    for i in todo:
        t = tf.texts[i].rstrip()
        if not t:
            continue
        reason = ""
        if int(fences[i]) % 2 == 1:
            reason = "unclosed code block"
        elif i in empty_set:
            tail = [ln for ln in t.split("\n") if ln.strip()][-2:]
            if len(tail) == 2 and LIST_MARKER.match(tail[0] + " "):
                reason = "ends on an empty list item"
            else:
                continue
        elif fences[i] > 0 and t.endswith("```"):
            continue
        if not reason:
            reason = _truncation_reason(t, tf.prompts[i], vocab, min_words, rare_max, punctuates)
        if not reason and conv is not None and _unpunctuated_prose(t, conv_words):
            reason = f"no final punctuation, unlike {conv:.0%} of similar responses"
        if reason:
            s[i] = 0.0
            details[i] = f"{reason}: …{t[-60:]!r}"
    return Scored(s, details)


def _unpunctuated_prose(t: str, min_words: int) -> bool:
    """A one-line sentence of ``min_words``+ words without final punctuation that is not a
    title, a hashtag line, a formula, code or a list."""
    if "\n" in t or CODE_HINT.search(t) or "#" in t or LIST_MARKER.match(t):
        return False
    words = t.split()
    if len(words) < min_words or not t[-1].isalpha():
        return False
    if re.search(r"[:=/|;]|\d", t):
        return False
    caps = sum(1 for w in words if w[:1].isupper())
    return caps / len(words) < 0.5


def _wilson_low(k: float, n: float, z: float = 1.96) -> float:
    if n <= 0:
        return 0.0
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    r = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (c - r) / d


def _punctuation_convention(tf: TextFrame, min_words: int, min_n: int = 50) -> float | None:
    """How surely the writers end one-line answers (``min_words``+ words) with punctuation: the
    95 % Wilson lower bound of that share, taking the best-punctuated stratum (source|period)
    with ``min_n``+ such answers, so that a degraded stratum — even a whole degraded source —
    does not hide the convention of the others (the whole frame when there are no strata).
    ``None`` when there are too few one-line answers to tell."""
    one_line = (tf.count(r"\S\s*\n\s*\S") == 0) & (tf.n_words >= min_words)
    done = np.ones(len(tf), dtype=bool)
    done[tf.unterminated()] = False
    groups: list[np.ndarray] = []
    if tf.strata is not None:
        keys = np.asarray(tf.strata, dtype=object)
        for k in set(keys[one_line].tolist()):
            m = one_line & (keys == k)
            if m.sum() >= min_n:
                groups.append(m)
    if not groups:
        if one_line.sum() < min_n:
            return None
        groups = [one_line]
    return max(_wilson_low(float(done[m].sum()), float(m.sum())) for m in groups)


def _truncation_reason(
    t: str,
    prompt: str,
    vocab: dict[str, int] | None,
    min_words: int,
    rare_max: int,
    punctuates: bool = True,
) -> str:
    last_char = t[-1]
    para = t.rsplit("\n\n", 1)[-1]
    lines = [ln.strip() for ln in para.split("\n") if ln.strip()]
    last_line = lines[-1] if lines else ""
    words = last_line.split()
    if not words or words[-1].startswith(("#", "@", "http")):
        return ""
    lw = words[-1].lower().strip("\"'()[]")
    if CODE_HINT.search(t):
        return ""
    if last_char in ",:-–(\u2014" and len(t) > 20:
        return f"ends with {last_char!r}"
    if lw in FUNCTION_WORDS and len(words) >= 2:
        return f"ends on {words[-1]!r}"
    # earlier lines of the paragraph end in punctuation (prose or punctuated list), this one not
    # (only evidence in data whose writers end their answers with punctuation)
    prev = lines[:-1]
    if (
        punctuates
        and len(prev) >= 1
        and len(words) >= 2
        and sum(1 for ln in prev if ln[-1] in TERMINAL) >= max(1, 2 * len(prev) / 3)
    ):
        return "last line has no ending, unlike the lines before it"
    if (
        punctuates
        and not LIST_MARKER.match(last_line)
        and len(words) >= min_words
        and re.search(r"[.!?][\"')\]]?\s+[A-Z0-9\"(]", last_line) is not None
    ):
        return "last sentence has no ending"
    w = words[-1].strip("\"'()[]")
    parts = last_line.split(",")
    comma_list = len(parts) >= 3 and all(len(x.split()) <= 3 for x in parts[1:])
    if w.isalpha() and w.islower() and len(words) >= 2 and not comma_list:
        if len(w) == 1 and w not in ("a", "i"):
            return f"ends mid-word ({w!r})"
        seen = vocab.get(w, 0) if vocab is not None else 0
        body = (t[: -len(words[-1])] + " " + prompt).lower()
        if len(w) >= 2 and seen <= 2 and re.search(r"\b" + re.escape(w) + r"[a-z]{2,}", body):
            return f"ends mid-word ({w!r} is the start of a longer word used in the text)"
        if vocab is not None and seen <= rare_max and len(w) <= 12 and len(words) >= 3:
            return f"ends mid-word ({w!r})"
    return ""


def _pattern_scorer(
    default: tuple[str, ...], what: str
) -> Callable[[TextFrame, dict[str, Any]], Scored]:
    def scorer(tf: TextFrame, p: dict[str, Any]) -> Scored:
        patterns = list(p.get("patterns", default)) + list(p.get("extra_patterns", []))
        per_hit = float(p.get("penalty", 1.0))
        # a pattern found in most examples is the house style, not a defect
        max_share = float(p.get("max_doc_share", 0.5))
        hits = np.zeros(len(tf))
        first: dict[int, str] = {}
        rows = np.flatnonzero(tf.count(union_pattern(patterns))) if patterns else np.zeros(0, int)
        if len(rows):
            sub = pa.array([tf.texts[i] for i in rows], pa.string())
            for pat in patterns:  # per pattern, only over the texts the union matched
                c = np.asarray(
                    pc.count_substring_regex(sub, pat).to_numpy(zero_copy_only=False), dtype=float
                )
                if len(tf) >= 20 and (c > 0).sum() / len(tf) > max_share:
                    continue
                hits[rows] += c
                for j in np.flatnonzero(c):
                    i = int(rows[j])
                    if i not in first:
                        try:
                            m = re.search(pat, tf.texts[i])
                        except re.error:  # RE2-only syntax
                            m = None
                        first[i] = f"{what}: {m.group(0)[:60]!r}" if m else what
        s = _clip01(1.0 - per_hit * hits)
        return Scored(s, {i: d for i, d in first.items() if s[i] < 1}, raw=hits)

    return scorer


score_placeholders = _pattern_scorer(PLACEHOLDER_PATTERNS, "placeholder")
score_refusal = _pattern_scorer(REFUSAL_PATTERNS, "refusal")


def _segments(text: str) -> list[str]:
    parts = re.split(r"\n+|(?<=[.!?])\s+", text)
    return [" ".join(x.lower().split()) for x in parts if x.strip()]


def score_boilerplate(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Template text: known boilerplate (AI disclaimers, mail signatures and footers,
    "auto-generated" notices, ``patterns``/``extra_patterns``) and, learned from the data
    itself, any sentence or line of at least ``shared_min_words`` (5) words that recurs in at
    least ``shared_min_share`` (0.5%) and ``shared_min_count`` (5) of the examples but in no
    more than ``shared_max_doc_share`` (50%: above that it is the house style, not a defect).
    An example containing such text scores at most ``shared_score`` (0.25), less the larger
    the share of its text that is template; each known pattern costs ``penalty`` (1.0)."""
    base = _pattern_scorer(BOILERPLATE_PATTERNS, "boilerplate")(tf, p)
    s = base.scores.copy()
    details = dict(base.details)
    if p.get("shared", True) and len(tf) >= 20:
        min_words = int(p.get("shared_min_words", 5))
        min_count = max(
            int(p.get("shared_min_count", 5)),
            math.ceil(float(p.get("shared_min_share", 0.005)) * len(tf)),
        )
        max_count = float(p.get("shared_max_doc_share", 0.5)) * len(tf)
        cap = float(p.get("shared_score", 0.25))
        segs = tf.cached("segments", lambda: [_segments(t) for t in tf.texts])
        df: Counter[str] = Counter()
        for ss in segs:
            df.update({x for x in ss if x.count(" ") + 1 >= min_words})
        common = {k for k, v in df.items() if min_count <= v <= max_count}
        if common:
            for i, ss in enumerate(segs):
                hit = [x for x in ss if x in common]
                if not hit:
                    continue
                share = sum(len(x) for x in hit) / max(1, sum(len(x) for x in ss))
                val = cap * (1.0 - share)
                if val < s[i]:
                    s[i] = max(0.0, val)
                    details[i] = f"template text found in {df[hit[0]]} examples: {hit[0][:60]!r}"
    return Scored(_clip01(s), details, raw=base.raw)


def score_repetition(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Repeated content: the share of lines/sentences that repeat an earlier one and the share
    of repeated word 3-grams: 1 up to ``ok_dup_share`` (0.15), 0 at ``max_dup_share`` (0.45)."""
    bad = float(p.get("max_dup_share", 0.45))
    good = float(p.get("ok_dup_share", 0.15))
    segs = tf.cached("segments", lambda: [_segments(t) for t in tf.texts])
    dup = np.zeros(len(tf))
    for i, ss in enumerate(segs):
        if len(ss) >= 2:
            long_ss = [x for x in ss if len(x) >= 12]
            if long_ss:
                dup[i] = 1.0 - len(set(long_ss)) / len(long_ss)
    words = tf.words()
    ngram_dup = np.zeros(len(tf))
    for i, ws in enumerate(words):
        n = len(ws)
        if n >= 12:
            grams = list(zip(ws, ws[1:], ws[2:], strict=False))
            ngram_dup[i] = 1.0 - len(set(grams)) / len(grams)
    share = np.maximum(dup, ngram_dup)
    s = _ramp_down(share, good, bad)
    details = {int(i): f"{share[i]:.0%} of the text repeats itself" for i in np.flatnonzero(s < 1)}
    return Scored(s, details, raw=share)


def score_verbosity(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Padding: the response is much longer than is usual for this dataset (robust z-score of
    log word count against the median and MAD of the area, or of all examples) and/or dense
    with filler phrases ("it is important to note", "in conclusion", "I hope this helps"…).
    ``z_ok`` (2.5) / ``z_bad`` (4.5) bound the length part; ``filler_ok`` (1.0) /
    ``filler_bad`` (3.0) bound filler phrases per 100 words, counted only from ``filler_min_count``
    (2) phrases on — one courteous closing in a short answer is not padding; the score is the
    lower of the two."""
    w = np.log1p(tf.n_words)
    med = tf.dataset_median(w, "logw")
    mad = tf.cached(
        "mad_logw", lambda: float(np.median(np.abs(w - np.median(w)))) if len(w) else 0.0
    )
    scale = max(1.4826 * mad, float(p.get("min_scale", 0.25)))
    z = (w - med) / scale
    s_len = _ramp_down(z, float(p.get("z_ok", 2.5)), float(p.get("z_bad", 4.5)))
    patterns = list(p.get("filler_patterns", FILLER_PATTERNS)) + list(p.get("extra_patterns", []))
    fill = np.zeros(len(tf))
    if patterns:
        fill += tf.count(union_pattern(patterns))
    density = 100.0 * fill / np.maximum(tf.n_words, 20.0)
    density[fill < float(p.get("filler_min_count", 2))] = 0.0
    s_fill = _ramp_down(density, float(p.get("filler_ok", 1.0)), float(p.get("filler_bad", 3.0)))
    s = np.minimum(s_len, s_fill)
    details: dict[int, str] = {}
    for i in np.flatnonzero(s < 1):
        parts = []
        if s_len[i] < 1:
            parts.append(f"{int(tf.n_words[i])} words, z = {z[i]:.1f} vs typical length")
        if s_fill[i] < 1:
            parts.append(f"{density[i]:.1f} filler phrases per 100 words")
        details[int(i)] = "; ".join(parts)
    return Scored(s, details, raw=z)


def score_language(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Written in the expected script/language: share of letters in ``script`` (``latin``,
    ``cyrillic``, ``greek``, ``arabic``, ``cjk`` or ``any``) at least ``min_share`` (0.8); with
    ``language: en`` also at least ``min_stopword_share`` (0.08) of words are common English
    words (texts under 8 words are not judged on that)."""
    scripts = {
        "latin": r"[A-Za-z\x{00C0}-\x{024F}]",
        "cyrillic": r"[\x{0400}-\x{04FF}]",
        "greek": r"[\x{0370}-\x{03FF}]",
        "arabic": r"[\x{0600}-\x{06FF}]",
        "cjk": r"[\x{3040}-\x{30FF}\x{3400}-\x{9FFF}\x{AC00}-\x{D7AF}]",
    }
    script = str(p.get("script", "latin"))
    letters = tf.chars(r"[\p{L}]")
    s = np.ones(len(tf))
    details: dict[int, str] = {}
    if script != "any":
        share = tf.chars(scripts[script]) / np.maximum(letters, 1)
        ok = (letters < 5) | (share >= float(p.get("min_share", 0.8)))
        s[~ok] = 0.0
        for i in np.flatnonzero(~ok):
            details[int(i)] = f"only {share[i]:.0%} of letters are {script}"
    if p.get("language") == "en":
        stop = frozenset(
            [
                "the",
                "a",
                "an",
                "and",
                "of",
                "to",
                "in",
                "is",
                "it",
                "that",
                "for",
                "on",
                "with",
                "as",
                "are",
                "was",
                "be",
                "this",
                "you",
                "i",
            ]
        )
        for k, ws in enumerate(tf.words()):
            if len(ws) >= 8 and sum(1 for x in ws if x in stop) / len(ws) < float(
                p.get("min_stopword_share", 0.08)
            ):
                s[k] = 0.0
                details.setdefault(k, "few common English words")
    return Scored(s, details)


def score_readability(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Sentences a reader can follow: mean words per sentence at most ``max_sentence_words``
    (40, 0 at twice it) and mean word length at most ``max_word_length`` (8 letters)."""
    n_s = np.maximum(tf.n_sentences, 1.0)
    wps = tf.n_words / n_s
    letters = tf.chars(r"[A-Za-z]")
    wl = letters / np.maximum(tf.n_words, 1.0)
    msw = float(p.get("max_sentence_words", 40))
    mwl = float(p.get("max_word_length", 8))
    s = np.minimum(_ramp_down(wps, msw, 2 * msw), _ramp_down(wl, mwl, mwl + 3))
    s[tf.n_words < 10] = 1.0
    details = {
        int(i): f"{wps[i]:.0f} words per sentence, {wl[i]:.1f} letters per word"
        for i in np.flatnonzero(s < 1)
    }
    return Scored(s, details, raw=wps)


def score_json(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """The text (or the first fenced code block when ``fenced: true``) parses as JSON; with
    ``required_keys`` the top-level object must hold them."""
    import orjson

    req = list(p.get("required_keys", []))
    s = np.ones(len(tf))
    details: dict[int, str] = {}
    for i, t in enumerate(tf.texts):
        body = t.strip()
        if p.get("fenced"):
            m = re.search(r"```(?:json)?\s*\n(.*?)```", t, re.S)
            body = m.group(1) if m else body
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            s[i] = 0.0
            details[i] = f"not valid JSON ({str(e)[:60]})"
            continue
        missing = [k for k in req if not isinstance(obj, dict) or k not in obj]
        if missing:
            s[i] = 0.0
            details[i] = f"JSON lacks {', '.join(missing)}"
    return Scored(s, details)


def score_pattern(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """Required structure and forbidden text: every regex in ``require`` must match (e.g.
    section headings) and none in ``forbid`` may; each miss or hit costs ``penalty`` (1.0)."""
    pen = float(p.get("penalty", 1.0))
    bad = np.zeros(len(tf))
    details: dict[int, str] = {}
    for pat in p.get("require", []):
        miss = ~tf.matches(pat)
        bad += miss
        for i in np.flatnonzero(miss):
            details.setdefault(int(i), f"missing required pattern {pat!r}")
    for pat in p.get("forbid", []):
        hit = tf.matches(pat)
        bad += hit
        for i in np.flatnonzero(hit):
            details.setdefault(int(i), f"forbidden pattern {pat!r}")
    return Scored(_clip01(1.0 - pen * bad), details, raw=bad)


def score_echo(tf: TextFrame, p: dict[str, Any]) -> Scored:
    """The response mostly repeats the prompt: share of its words (multiset) found in the
    prompt ≥ ``max_overlap`` (0.9) for responses of ``min_words`` (5)+ words scores 0."""
    lim = float(p.get("max_overlap", 0.9))
    mw = int(p.get("min_words", 5))
    ov = prompt_overlap(tf)
    s = np.where((ov >= lim) & (tf.n_words >= mw), 0.0, 1.0)
    return Scored(
        s,
        {int(i): f"{ov[i]:.0%} of the response repeats the prompt" for i in np.flatnonzero(s < 1)},
        raw=ov,
    )


def prompt_overlap(tf: TextFrame) -> np.ndarray:
    def go() -> np.ndarray:
        out = np.zeros(len(tf))
        for i, (ws, pr) in enumerate(zip(tf.words(), tf.prompts, strict=True)):
            if ws and pr:
                pw = set(WORD_RE.findall(pr.lower()))
                out[i] = sum(1 for w in ws if w in pw) / len(ws)
        return out

    return tf.cached("prompt_overlap", go)  # type: ignore[no-any-return]


SCORERS: dict[str, Callable[[TextFrame, dict[str, Any]], Scored]] = {
    "length": score_length,
    "truncation": score_truncation,
    "placeholders": score_placeholders,
    "boilerplate": score_boilerplate,
    "verbosity": score_verbosity,
    "repetition": score_repetition,
    "refusal": score_refusal,
    "language": score_language,
    "readability": score_readability,
    "json": score_json,
    "pattern": score_pattern,
    "echo": score_echo,
}


def _word_alternation(words: Sequence[str]) -> str:
    return r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"


def task_features(prompt: TextFrame) -> dict[str, np.ndarray]:
    """Share of the instruction's words (the prompt's first non-empty line) that name a closed
    task and share that name an open one (``CLOSED_TASK_WORDS`` / ``OPEN_TASK_WORDS``)."""

    def go() -> dict[str, np.ndarray]:
        first = TextFrame(
            pc.replace_substring_regex(
                pc.utf8_trim_whitespace(prompt.arr), r"\n[\s\S]*", ""
            ).to_pylist()
        )
        n = np.maximum(first.n_words, 1)
        return {
            "task_closed": first.count(_word_alternation(CLOSED_TASK_WORDS), ignore_case=True) / n,
            "task_open": first.count(_word_alternation(OPEN_TASK_WORDS), ignore_case=True) / n,
        }

    return prompt.cached("task_features", go)  # type: ignore[no-any-return]


def dense_features(resp: TextFrame, prompt: TextFrame) -> tuple[np.ndarray, list[str]]:
    """Numeric text features for the learned scorer (no labels needed): lengths, structure,
    punctuation, lexical variety and how the response relates to the prompt."""
    rw, rc = resp.n_words, resp.n_chars
    pw, pcn = prompt.n_words, prompt.n_chars
    ttr = np.array([len(set(ws)) / len(ws) if ws else 0.0 for ws in resp.words()])
    cols: dict[str, np.ndarray] = {
        "log_resp_words": np.log1p(rw),
        "log_resp_chars": np.log1p(rc),
        "log_prompt_words": np.log1p(pw),
        "log_prompt_chars": np.log1p(pcn),
        "log_len_ratio": np.log1p(rw) - np.log1p(pw),
        "resp_lines": np.log1p(resp.n_lines),
        "resp_sentences": np.log1p(resp.n_sentences),
        "words_per_sentence": np.log1p(rw / np.maximum(resp.n_sentences, 1)),
        "list_items": np.log1p(resp.count(r"(?m)^\s*(?:[-*•]|\d{1,3}[.)])\s")),
        "digit_share": resp.chars(r"[0-9]") / np.maximum(rc, 1),
        "upper_share": resp.chars(r"[A-Z]") / np.maximum(rc, 1),
        "punct_share": (rc - resp.chars(r"[\p{L}\p{N}_\s]")) / np.maximum(rc, 1),
        "code_marks": np.log1p(resp.count(r"```|[{};]")),
        "ends_terminal": resp.matches(r"[.!?\"')\]]\s*$").astype(float),
        "type_token_ratio": ttr,
        "prompt_overlap": prompt_overlap(resp),
        "prompt_lines": np.log1p(prompt.n_lines),
        "prompt_question": prompt.matches(r"\?").astype(float),
        "filler": np.log1p(resp.count(union_pattern(FILLER_PATTERNS))),
        **task_features(prompt),
        "hedge_rate": resp.count(_word_alternation(HEDGE_WORDS), ignore_case=True)
        / np.maximum(rw, 1),
    }
    names = list(cols)
    return np.column_stack([cols[k] for k in names]).astype(np.float64), names
