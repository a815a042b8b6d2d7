"""Text patterns shared by several checks: template placeholders and one-pass pattern unions.

``PLACEHOLDER_PATTERNS`` are slots a writer forgot to fill in (the quality check penalises them
in answers). ``TEMPLATE_SLOT_PATTERNS`` add the slot forms templated or draft *inputs* carry
(``{client_name}``, ``<client name>``, ``[Party A]``, ``[●]``, ``%s``, ``${var}``…); the shift
test's ``placeholders`` feature matches both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PLACEHOLDER_PATTERNS = (
    r"\[[A-Z][A-Za-z' ]{0,30}(?:Name|Address|Date|Number|Email|Phone|Title|City)\]",
    r"(?i)\[(?:insert|your|enter|add|name|company|date|placeholder|todo|tbd|link|url|email|phone|"
    r"address|recipient|sender|product|customer|xx+)[^\]\n]{0,40}\]",
    r"\{\{\s*[\w .-]{1,40}\s*\}\}",
    r"(?i)<\s*(?:insert|your|placeholder|todo)[^<>\n]{0,40}>",
    r"<[A-Z][A-Z_ ]{2,30}>",
    r"\{(?:customer|first|last|full|user|company|product|recipient|sender)_?[a-z_]{0,20}\}",
    r"(?i)\{(?:name|date|email|phone|address|company|product)\}",
    r"(?i)\blorem ipsum\b",
    r"\b(?:TODO|TBD|FIXME)\b",
    r"\bX{3,}\b",
    r"\[\s*\.\.\.\s*\]",
    r"(?i:\bplaceholder\b)",
)

# common HTML tag names: <b>, <div …> are markup, not slots
_HTML = (
    r"a|b|i|u|p|s|q|br|hr|em|li|ol|ul|dl|dt|dd|td|th|tr|h[1-6]|div|span|strong|small|big|sub|sup|"
    r"img|code|pre|kbd|var|html|head|body|title|meta|link|script|style|table|thead|tbody|tfoot|"
    r"form|input|label|select|option|button|textarea|iframe|nav|section|header|footer|main|"
    r"article|aside|figure|blockquote|mark|abbr|cite|del|ins|center|font"
)
TEMPLATE_SLOT_PATTERNS = (
    # {name}, {client.name}, {{ name }}, ${name}, {0}
    r"\$?\{\{?\s*[A-Za-z_][\w. -]{0,40}\s*\}\}?|\{\d\}",
    # <NAME>, <client name>, <<Party>>: angle slots that are not HTML tags
    r"<<?(?!(?:" + _HTML + r")\b[\s>/])[A-Za-z_][\w .'-]{0,40}>>?",
    # [name], [DATE], [Client Name], [NAME OF PARTY], [Name of the Buyer]
    r"\[\s*[A-Za-z_]\w{0,30}\s*\]",
    r"\[\s*[A-Z][\w'-]*(?:\s+(?:[A-Z][\w'-]*|of|the|and|or|for|to|a|an|in|on|at|by))*\s*\]",
    # blanks: [●], [•], [*], [___], [...], ___, XXX, ……
    r"\[\s*(?:[●•*_xX…-]{1,5}|\.{2,5})\s*\]|_{3,}|\bX{3,}\b|\.{5,}",
    # printf / shell slots: %s, %d, %(name)s, $VAR
    r"%[sd]\b|%\(\w+\)[sd]|\$[A-Z_]{2,}\b",
)


def union_pattern(patterns: Sequence[str]) -> str:
    """One alternation of ``patterns`` (leading inline flags become scoped groups), so a text
    or a column is scanned once instead of once per pattern (Python ``re`` and RE2 alike)."""
    out = []
    for pat in patterns:
        m = re.match(r"^\(\?([a-zA-Z]+)\)", pat)
        out.append(f"(?{m.group(1)}:{pat[m.end() :]})" if m else f"(?:{pat})")
    return "|".join(out)
