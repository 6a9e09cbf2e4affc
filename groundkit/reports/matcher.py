"""Linear-time pattern matching: many small patterns, tried only where their first word occurs.

Running every synonym's regex over every sentence costs (patterns x text); a regex alternation of all of
them would stop at its first matching branch rather than the longest. Instead each pattern is indexed by
the words it can start with, the text is tokenised once, and at each word only the patterns starting with
that word are tried (anchored). Overlaps are then resolved longest-first in O(n log n).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["PatternIndex", "WORD", "longest_first"]

T = TypeVar("T")
WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass
class PatternIndex(Generic[T]):
    """Patterns with a payload each, indexed by first word (patterns that may start with punctuation are
    scanned with ``finditer``; there are few of them, e.g. ";")."""

    by_word: dict[str, list[tuple[re.Pattern[str], T]]] = field(default_factory=dict)
    scanned: list[tuple[re.Pattern[str], T]] = field(default_factory=list)

    def add(self, regex: re.Pattern[str], firsts: frozenset[str] | None, payload: T) -> None:
        if firsts is None:
            self.scanned.append((regex, payload))
            return
        for w in firsts:
            self.by_word.setdefault(w, []).append((regex, payload))

    def matches(self, text: str, start: int, end: int,
                words: list[tuple[int, str]] | None = None) -> list[tuple[int, int, T]]:
        """Every (start, end, payload) of every pattern inside ``text[start:end]`` starting at a word
        (or anywhere, for scanned patterns); ``words`` = (start, lower-case word) if already known."""
        if words is None:
            words = [(m.start(), m.group(0).lower()) for m in WORD.finditer(text, start, end)]
        out: list[tuple[int, int, T]] = []
        get = self.by_word.get
        for pos, w in words:
            pats = get(w)
            if not pats:
                continue
            for rx, payload in pats:
                m = rx.match(text, pos, end)
                if m is not None and m.end() > pos:
                    out.append((pos, m.end(), payload))
        for rx, payload in self.scanned:
            for m in rx.finditer(text, start, end):
                if m.end() > m.start():
                    out.append((m.start(), m.end(), payload))
        return out


def longest_first(cands: list[tuple[int, int, T]], key: Callable[[tuple[int, int, T]], int] | None = None
                  ) -> list[tuple[int, int, T]]:
    """Non-overlapping subset, longest match first (ties: earlier, then input order); in text order.
    O(n log n): the chosen spans are kept sorted and each candidate is checked against its neighbours."""
    order = sorted(range(len(cands)), key=lambda i: (-(cands[i][1] - cands[i][0]), cands[i][0], i))
    starts: list[int] = []
    ends: list[int] = []
    chosen: list[tuple[int, int, T]] = []
    for i in order:
        s, e, _ = cands[i]
        k = bisect_left(starts, s)
        if k < len(starts) and starts[k] < e:
            continue
        if k > 0 and ends[k - 1] > s:
            continue
        starts.insert(k, s)
        ends.insert(k, e)
        chosen.insert(k, cands[i])
    return chosen
