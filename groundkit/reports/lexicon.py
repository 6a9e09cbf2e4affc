"""Vocabulary of the report parser: loaded from ``lexicon.yaml`` (package data), optionally extended or
overridden by a user's terms file, validated, and compiled into patterns.

The vocabulary is data so that a reviewer can check a synonym list at a glance and a site can add its own
wording without touching code. Patterns use a tiny syntax instead of raw regular expressions:

* words are separated by single spaces and match across any run of spaces, newlines or hyphens
  ("air_space disease" matches "air space disease" and "air-space disease");
* ``a|b|c`` is a choice of words; a trailing ``?`` makes a word (or a choice) optional;
* ``_`` joins several words into one choice: ``evidence_of|signs_of``;
* ``ADV`` is one degree adverb (``adverbs``), ``SIDE`` one of left/right/bilateral, ``BE`` a copula.

A terms file (``parse_report(text, terms=path)`` or ``GROUNDKIT_REPORT_TERMS``) has the same keys as
``lexicon.yaml``: its lists are appended, its mappings merged (its values win) and the dotted paths listed
under ``replace:`` replace ours. YAML is read with ``yaml.safe_load`` after refusing anchors and aliases
(an alias bomb would otherwise expand in memory).

This module is the entry point: the `Lexicon` and how one is built and cached. The pieces live in
`patterns` (the pattern syntax), `lexicon_fields` (validation, field by field), `terms` (reading and
merging a terms file) and `builtin_vocab` (``lexicon.yaml``); their public names are re-exported here.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from groundkit.reports.builtin_vocab import BUILTIN_SOURCE, builtin_data
from groundkit.reports.lexicon_fields import (  # noqa: F401 - MAX_PATTERN_CHARS is re-exported
    MAX_PATTERN_CHARS,
    TOP_KEYS,
    LexiconError,
    ObservationPattern,
    check_category_of,
    check_cues,
    check_observations,
    check_places,
    check_words,
    fail,
)
from groundkit.reports.patterns import compile_pattern, first_words, pattern_regex, respell  # noqa: F401 - respell is re-exported
from groundkit.reports.terms import MAX_TERMS_BYTES, merge_terms, precheck_terms, read_terms_file  # noqa: F401 - MAX_TERMS_BYTES is re-exported

__all__ = ["Lexicon", "LexiconError", "MSCXR_CATEGORIES", "CHEXPERT_OBSERVATIONS", "CATEGORY_OF", "OBSERVATIONS",
           "ABBREVIATIONS", "compile_pattern", "default_lexicon", "load_lexicon", "pattern_regex", "TERMS_ENV"]

TERMS_ENV = "GROUNDKIT_REPORT_TERMS"

MSCXR_CATEGORIES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
    "Lung Opacity", "Pleural Effusion", "Pneumonia", "Pneumothorax",
)
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)


@dataclass(frozen=True, eq=False)  # hashed by identity: compiled indexes are cached per lexicon
class Lexicon:
    """Compiled view of the vocabulary; built once per terms file (see `load_lexicon`)."""

    source: str
    observations: tuple[ObservationPattern, ...]
    category_of: dict[str, str]
    cues: dict[str, tuple[str, ...]]
    temporal: dict[str, tuple[str, ...]]
    sides: dict[str, str]
    zones: dict[str, str]
    places: dict[str, frozenset[str] | tuple[str, ...]]
    words: dict[str, frozenset[str] | tuple[str, ...]]

    @property
    def adverbs(self) -> tuple[str, ...]:
        return tuple(self.words["adverbs"])

    @property
    def be(self) -> tuple[str, ...]:
        return tuple(self.words["be"])

    def compile(self, pattern: str) -> re.Pattern[str]:
        return compile_pattern(pattern, self.adverbs, self.be)

    def first_words(self, pattern: str) -> frozenset[str] | None:
        return first_words(pattern, self.adverbs, self.be)

    def category(self, observation: str) -> str:
        return self.category_of.get(observation, observation)


def build_lexicon(data: dict[str, Any], source: str) -> Lexicon:
    """Validate a merged vocabulary mapping and compile it; errors name ``source`` and the field.
    Sections are checked in a fixed order (words first: patterns need its adverbs and copulas), so the
    first error reported does not depend on the file's key order."""
    if not isinstance(data, dict):
        raise LexiconError(f"{source}: expected a mapping at the top level")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise fail(source, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    words = check_words(source, data)
    observations = check_observations(source, data, words)
    cues, temporal = check_cues(source, data, words)
    sides, zones, places = check_places(source, data, words)
    category_of = check_category_of(source, data)
    return Lexicon(source=source, observations=tuple(observations), category_of=category_of, cues=cues,
                   temporal=temporal, sides=sides, zones=zones, places=places, words=words)


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return build_lexicon(builtin_data(), BUILTIN_SOURCE)


@lru_cache(maxsize=8)
def _user_lexicon(path: str, mtime_ns: int, size: int) -> Lexicon:
    """Keyed by the file's mtime and size too, so that an edited terms file is read again."""
    p = Path(path)
    extra = read_terms_file(p)
    precheck_terms(extra, path, builtin_data())
    return build_lexicon(merge_terms(builtin_data(), extra, path), path)


def load_lexicon(terms: str | os.PathLike[str] | None = None) -> Lexicon:
    """The built-in vocabulary, extended by ``terms`` (a YAML/JSON file) or else by the file named in
    ``$GROUNDKIT_REPORT_TERMS``; cached per file version."""
    if terms is None:
        terms = os.environ.get(TERMS_ENV) or None
    if terms is None:
        return default_lexicon()
    p = Path(terms)
    try:
        st = p.stat()
    except OSError as e:
        raise LexiconError(f"{p}: cannot read terms file: {e.strerror or e}") from None
    if not p.is_file():
        raise LexiconError(f"{p}: terms file is not a regular file")
    return _user_lexicon(str(p), st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------------------------
# backward-compatible module constants (the built-in vocabulary)
# --------------------------------------------------------------------------------------------
CATEGORY_OF: dict[str, str] = dict(default_lexicon().category_of)
OBSERVATIONS: dict[str, tuple[str, ...]] = {
    o: tuple(p.pattern for p in default_lexicon().observations if p.observation == o and not p.absent)
    for o in CHEXPERT_OBSERVATIONS}
ABBREVIATIONS: frozenset[str] = frozenset(default_lexicon().words["abbreviations"])
