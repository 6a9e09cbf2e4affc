"""The words of a noun phrase around its core: modifiers, sides and zones written before it ("small left
apical pneumothorax"), and the modifier/zone words a mention reports.

Apart from `mentions` because these rules are about single words and their neighbours only; the location
phrase after a core is `location.extend_right`.
"""
from __future__ import annotations

from groundkit.reports import location as LOC
from groundkit.reports.lexicon import Lexicon
from groundkit.reports.location import ORDINAL, Tok
from groundkit.reports.model import only_whitespace, unique

__all__ = ["MAX_LEFT_WORDS", "extend_left", "is_modifier", "modifiers", "zone_words"]

MAX_LEFT_WORDS = 8  # modifier/place words a noun phrase may take before its core


def is_modifier(lex: Lexicon, word: str) -> bool:
    """A modifier word, or a hyphenated word whose first part is one."""
    mods = lex.words["modifiers"]
    return word in mods or ("-" in word and LOC.parts(word)[0] in mods)


def _left_word(lex: Lexicon, word: str) -> bool:
    return is_modifier(lex, word) or LOC.is_place(lex, word) or bool(ORDINAL.match(word))


def extend_left(lex: Lexicon, text: str, toks: list[Tok], k: int, start: int, lo: int, blocked: set[int]) -> int:
    """Take modifier/side/zone words directly before the core ("small left apical"); ``k`` = index of
    the token before the core."""
    cur, taken, side_taken = start, 0, False
    while k >= 0 and taken < MAX_LEFT_WORDS:
        t = toks[k]
        if t.start < lo or k in blocked or not only_whitespace(text, t.end, cur):
            break
        if _left_word(lex, t.word):
            side_taken = side_taken or _is_side(lex, t.word)
            cur, k, taken = t.start, k - 1, taken + 1
            continue
        if t.word in lex.places["connectors"] and k >= 1 and k - 1 not in blocked and toks[k - 1].start >= lo:
            before, after = toks[k - 1].word, toks[k + 1].word if k + 1 < len(toks) else ""
            # sides coordinated in one noun phrase, each with its own size: "small right and trace left effusions"
            pair_ok = _same_kind(lex, before, after) or (side_taken and _is_side(lex, before))
            if pair_ok and only_whitespace(text, toks[k - 1].end, t.start) and k + 1 < len(toks) \
                    and toks[k + 1].start == cur:
                cur, k, taken = toks[k - 1].start, k - 2, taken + 2
                continue
        break
    return cur


def _is_side(lex: Lexicon, w: str) -> bool:
    return w in lex.sides and w not in lex.zones and w not in ("l", "r", "both")


def _same_kind(lex: Lexicon, before: str, after: str) -> bool:
    """Words a connector may join inside a noun phrase: "small to moderate", "left and right", "upper and
    middle", "right middle lobe and lingular" (but not "at the left base and left lower lobe ...")."""
    def kind(w: str) -> str:
        if w in lex.sides and w not in lex.zones:
            return "side"
        if w in lex.zones or w in lex.places["levels"]:
            return "zone"
        if w in lex.places["lobe_nouns"]:
            return "lobe"
        return "modifier" if is_modifier(lex, w) else "other"
    a, b = kind(before), kind(after)
    return (a == b and a != "other") or (a == "lobe" and b in ("zone", "side"))


def modifiers(lex: Lexicon, words: list[str], core_words: set[str]) -> list[str]:
    """Modifiers of a mention's words; words of the lexicon match itself are not modifiers ("central line",
    "interstitial edema") unless they are degree adverbs ("is mildly enlarged")."""
    return unique(w for w in words if is_modifier(lex, w) and w not in lex.sides and w not in lex.zones
                  and (w not in core_words or w.endswith("ly")))


def zone_words(lex: Lexicon, words: list[str]) -> list[str]:
    """Raw zone words (kept for backward compatibility; ``location`` has the normalised ones)."""
    return unique(p for w in words for p in [w, *LOC.parts(w)] if p in lex.zones or p in lex.places["levels"])
