"""Template lines: text that many inputs repeat verbatim, removed before training and production
inputs are compared.

SFT inputs are often wrapped in a template that production inputs do not carry: an Alpaca record
``{"instruction": "Classify the customer's request…", "input": <query>}`` becomes the prompt
``instruction + "\\n\\n" + query``, or a prompt/completion record reads ``Query: <query>\\nIntent:``,
while the production log holds the bare query. Compared as they are, every training input looks
shifted (the shift test separates the two at AUC 1.0 and names length as the explanation), and
the fixed text pulls all training embeddings toward one point, so production queries of covered
topics look far (CLINC150 and hwu64 with 3 domains missing: false alarms 0.062–0.092 for bare
queries, 0.148–0.174 under an instruction; ``bench/bench_template.py``, docs/benchmarks.md). The
comparison is about what varies between inputs, so text repeated verbatim by many inputs is taken
out first.

A *template line* is a line (stripped of surrounding white space, non-empty) that occurs in at
least ``min_share`` of one side's inputs, counting only inputs of two or more non-empty lines (a
one-line input that happens to be frequent, "yes" or "hi", is content, not a wrapper), and in at
least ``min_count`` of them; it has at most ``max_words`` words (a longer line many inputs repeat
is a passage several questions share, content) and holds no template slot or bracketed
alternatives (``[Client Name]`` or ``[shall/may]`` on a line of its own is the surface change the
shift test must name, not a wrapper). A *label* is a field label opening lines (``Query:``,
``### Input:``) held by as many inputs, counted over every input and the lines that are not
template lines; a one-line instruction ending in a colon before the input ("Classify this
request: <query>") is such a label too. Template lines are removed from the inputs of both sides
and labels taken off their lines (the content after them stays); an input made of nothing but
template lines is kept as it is. What was found, with its share on each side, is reported, so a
template that only one side has is stated, not hidden.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ftprep.distribution.text import has_slot_or_alternatives

SHOWN_CHARS = 200  # characters of a template line kept in the artifact and findings
SHOWN_ITEMS = 20  # inputs carrying it kept per side (example ids of the findings)
# a field label opening a line: "Query: …", "### Input: …", "Customer said: …", or a one-line
# instruction before the input, "Classify the intent of this customer request: …" (a letter
# first, up to 150 characters without a colon, a colon, white space, then content; "10:30" and
# "http://" are not labels)
_LABEL = re.compile(r"^((?:[#>*-]+\s*)?[^\W\d_][^:\n]{0,150}?:)\s+(?=\S)")


@dataclass(slots=True)
class TemplateParams:
    enabled: bool = True
    min_share: float = 0.2  # of one side's inputs (multi-line ones carry it)
    min_count: int = 10
    # longer lines are content (a passage many questions share), never a template
    max_words: int = 40

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemplateParams:
        out = cls()
        if "strip_templates" in d:
            out.enabled = bool(d["strip_templates"])
        if "template_min_share" in d:
            share = float(d["template_min_share"])
            if not 0 < share <= 1:
                raise ValueError("template_min_share: expected a share in (0, 1]")
            out.min_share = share
        return out


@dataclass(slots=True)
class TemplateLine:
    line: str
    training_share: float  # of all training inputs that hold it
    production_share: float
    kind: str = "line"  # "line": a whole line; "prefix": a field label opening lines
    # the first inputs of each side that carry it (indices), for the findings' examples
    training_items: list[int] = field(default_factory=list)
    production_items: list[int] = field(default_factory=list)

    def differs(self, by: float) -> bool:
        """Its shares on the two sides differ by at least ``by``: a template one side carries
        and the other (mostly) lacks, not a wrapper both share."""
        return abs(self.training_share - self.production_share) >= by

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line[:SHOWN_CHARS],
            "kind": self.kind,
            "training_share": round(self.training_share, 4),
            "production_share": round(self.production_share, 4),
        }


def _lines(text: str) -> list[str]:
    return [s for s in (x.strip() for x in text.splitlines()) if s]


def _label(line: str) -> str | None:
    m = _LABEL.match(line)
    return m.group(1) if m else None


def _common(df: Counter[str], n: int, p: TemplateParams) -> set[str]:
    need = max(p.min_count, p.min_share * n)
    return {
        x
        for x, c in df.items()
        if c >= need and len(x.split()) <= p.max_words and not has_slot_or_alternatives(x)
    }


def _frequent_lines(texts: list[str], p: TemplateParams) -> set[str]:
    """Lines held by at least ``min_share`` of ``texts`` (and ``min_count``), counted in inputs
    of two or more lines only."""
    df: Counter[str] = Counter()
    for t in texts:
        lines = _lines(t)
        if len(lines) > 1:
            df.update(set(lines))
    return _common(df, len(texts), p)


def _frequent_labels(texts: list[str], whole: set[str], p: TemplateParams) -> set[str]:
    """Labels opening lines (other than the template lines ``whole``) of at least ``min_share``
    of ``texts`` (and ``min_count``), counted in every input."""
    df: Counter[str] = Counter()
    for t in texts:
        df.update({lab for s in _lines(t) if s not in whole and (lab := _label(s))})
    return _common(df, len(texts), p)


def strip_templates(
    train: list[str], prod: list[str], params: TemplateParams | None = None
) -> tuple[list[str], list[str], list[TemplateLine]]:
    """``(training inputs, production inputs, template lines)`` with the template lines and
    labels taken out of every input that has other content (lines joined by a newline)."""
    p = params or TemplateParams()
    if not p.enabled:
        return train, prod, []
    whole = _frequent_lines(train, p) | _frequent_lines(prod, p)
    labels = _frequent_labels(train, whole, p) | _frequent_labels(prod, whole, p)
    if not whole and not labels:
        return train, prod, []

    def strip(texts: list[str]) -> tuple[list[str], Counter[str], dict[str, list[int]]]:
        out, held, first = [], Counter[str](), dict[str, list[int]]()
        for n, t in enumerate(texts):
            lines = _lines(t)
            hit: set[str] = set()
            kept = []
            for line in lines:
                if line in whole:
                    hit.add(line)
                    continue
                lab = _label(line) if labels else None
                if lab in labels:
                    assert lab is not None
                    hit.add(lab)
                    line = line[len(lab) :].strip()
                kept.append(line)
            if not hit:
                out.append(t)
                continue
            held.update(hit)
            for x in hit:
                if len(items := first.setdefault(x, [])) < SHOWN_ITEMS:
                    items.append(n)
            out.append("\n".join(kept) if kept else t)
        return out, held, first

    (t_out, t_held, t_first), (p_out, p_held, p_first) = strip(train), strip(prod)
    found = sorted(
        (
            TemplateLine(
                s,
                t_held[s] / max(len(train), 1),
                p_held[s] / max(len(prod), 1),
                "line" if s in whole else "prefix",
                t_first.get(s, []),
                p_first.get(s, []),
            )
            for s in whole | labels
        ),
        key=lambda x: (-max(x.training_share, x.production_share), x.kind, x.line),
    )
    return t_out, p_out, found


def without_templates(texts: list[str], params: TemplateParams | None = None) -> list[str]:
    """``texts`` with the template lines and labels they repeat taken out (one side: what the
    near-duplicate and near-identical checks compare)."""
    return strip_templates(texts, [], params)[0]
