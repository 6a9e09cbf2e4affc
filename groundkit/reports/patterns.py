"""The small pattern syntax of the vocabulary, compiled to regular expressions.

Patterns are data a reviewer reads, so they use a tiny syntax instead of raw regular expressions:

* words are separated by single spaces and match across any run of spaces, newlines or hyphens
  ("air_space disease" matches "air space disease" and "air-space disease");
* ``a|b|c`` is a choice of words; a trailing ``?`` makes a word (or a choice) optional;
* ``_`` joins several words into one choice: ``evidence_of|signs_of``;
* ``ADV`` is one degree adverb (``adverbs``), ``SIDE`` one of left/right/bilateral, ``BE`` a copula.
"""
from __future__ import annotations

import re
from functools import cache

from groundkit.reports.builtin_vocab import DEFAULT_ADVERBS, DEFAULT_BE

__all__ = ["PLAIN_WORD", "compile_pattern", "first_words", "pattern_regex", "respell"]

_SEP = r"[\s\-]+"
PLAIN_WORD = re.compile(r"[A-Za-z0-9]+")  # one word of a pattern (and of a spelling entry)


def _choice_regex(token: str, specials: dict[str, str]) -> str:
    if token in specials:
        return specials[token]
    alts = sorted(token.split("|"), key=len, reverse=True)  # longer first: alternation is leftmost-first
    parts = [specials[alt] if alt in specials else _SEP.join(re.escape(w) for w in alt.split("_")) for alt in alts]
    return "(?:" + "|".join(parts) + ")"


def _specials(adverbs: tuple[str, ...], be: tuple[str, ...]) -> dict[str, str]:
    return {"ADV": _choice_regex("|".join(adverbs), {}), "SIDE": "(?:left|right|bilateral)",
            "BE": _choice_regex("|".join(be), {})}


def pattern_regex(pattern: str, adverbs: tuple[str, ...] = (), be: tuple[str, ...] = ()) -> str:
    """Regex text of one pattern (see the module docstring), bounded by word edges."""
    specials = _specials(adverbs or DEFAULT_ADVERBS, be or DEFAULT_BE)
    out, need_sep = [], False
    for raw in pattern.split(" "):
        optional = raw.endswith("?") and len(raw) > 1
        tok = raw[:-1] if optional else raw
        body = _choice_regex(tok, specials)
        if optional:
            out.append(f"(?:{_SEP}{body})?" if need_sep else f"(?:{body}{_SEP})?")
            continue
        out.append(f"{_SEP}{body}" if need_sep else body)
        need_sep = True
    left = r"(?<![\w])" if pattern[:1].isalnum() else ""
    right = r"(?![\w])" if pattern.rstrip("?")[-1:].isalnum() else ""
    return f"{left}{''.join(out)}{right}"


@cache
def compile_pattern(pattern: str, adverbs: tuple[str, ...] = (), be: tuple[str, ...] = ()) -> re.Pattern[str]:
    """One pattern, case-insensitive. Synonyms are matched one by one and the longest kept, since a regex
    alternation stops at its first matching branch ("pacemaker" before "pacemaker leads")."""
    return re.compile(pattern_regex(pattern, adverbs, be), re.IGNORECASE)


def first_words(pattern: str, adverbs: tuple[str, ...], be: tuple[str, ...]) -> frozenset[str] | None:
    """Lower-case words a match of ``pattern`` can start with (None: it may start with punctuation).
    Lets the matcher try only the patterns whose first word is at hand, which keeps matching linear."""
    specials = {"ADV": adverbs, "SIDE": ("left", "right", "bilateral"), "BE": be}
    out: set[str] = set()
    for raw in pattern.split(" "):
        optional = raw.endswith("?") and len(raw) > 1
        tok = raw[:-1] if optional else raw
        alts = [a for alt in tok.split("|") for a in specials.get(alt, (alt,))]
        for alt in alts:
            w = PLAIN_WORD.match(alt.split("_")[0])
            if not w or w.start() != 0:
                return None
            out.add(w.group(0).lower())
        if not optional:
            return frozenset(out)
    return frozenset(out)


def respell(pattern: str, spellings: dict[str, tuple[str, ...]]) -> str:
    """``pattern`` with the misspellings of its one-word choices added as further choices
    ("atelectasis|atelectatic" -> "atelectasis|atelectatic|atelecatsis|atelectesis")."""
    if not spellings:
        return pattern
    out = []
    for raw in pattern.split(" "):
        optional = raw.endswith("?") and len(raw) > 1
        tok = raw[:-1] if optional else raw
        alts = tok.split("|")
        extra = [m for a in alts for m in spellings.get(a.lower(), ()) if m not in alts]
        tok = "|".join(alts + list(dict.fromkeys(extra)))
        out.append(tok + "?" if optional else tok)
    return " ".join(out)
