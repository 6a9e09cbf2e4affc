"""Field-by-field validation of vocabulary data (built-in or merged with a terms file).

Each check returns the cleaned value or raises a `LexiconError` that names the source file and the dotted
field, so that a site editing its terms file learns exactly which entry is wrong. `lexicon.build_lexicon`
assembles the sections checked here; `terms` reuses the entry checks on a terms file before merging.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from groundkit.reports.patterns import PLAIN_WORD, compile_pattern, respell

__all__ = ["LexiconError", "ObservationPattern", "MAX_PATTERN_CHARS", "TOP_KEYS", "check_pattern", "fail",
           "observation_entry", "raw_list", "check_words", "check_observations", "check_cues", "check_places",
           "check_category_of"]

MAX_PATTERN_CHARS = 500

CUE_LISTS = ("negation_pre", "negation_post", "negation_either", "resolved_pre", "resolved_post",
             "uncertainty_pre", "uncertainty_post", "uncertainty_both", "indication_pre", "pseudo", "terminators",
             "negation_terminators")
TEMPORAL = ("new", "chronic", "historical")
TOP_KEYS = {"version", "observations", "category_of", "not_findings", "cues", "places", "words", "replace"}
PLACE_LISTS = ("levels", "lobe_nouns", "zone_nouns", "anatomy", "prepositions", "determiners", "connectors",
               "linking", "comparatives", "lung_words", "plural_bilateral", "inherit_links", "phrases")
WORD_LISTS = ("modifiers", "size_modifiers", "adverbs", "be", "abbreviations", "sideless", "sign_explained_by")


class LexiconError(ValueError):
    """A terms file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ObservationPattern:
    """One synonym of an observation (``observation`` None: a word sense that is no finding)."""

    pattern: str
    observation: str | None
    needs_lung: bool = False
    absent: bool = False
    sign: bool = False  # evidence for the observation rather than the observation ("blunted costophrenic angle")
    also: tuple[str, ...] = ()  # further observations the same words state ("hydropneumothorax": effusion too)


# --------------------------------------------------------------------------------------------
# single values
# --------------------------------------------------------------------------------------------
def fail(source: str, field: str, msg: str) -> LexiconError:
    """The error for one bad field (raised by the caller, so that tracebacks point at the check)."""
    return LexiconError(f"{source}: field '{field}': {msg}")


def raw_list(source: str, field: str, v: Any) -> list[Any]:
    """A list field, where a missing value is an empty list."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise fail(source, field, f"expected a list, got {type(v).__name__}")
    return v


def check_pattern(source: str, field: str, p: Any, adverbs: tuple[str, ...], be: tuple[str, ...]) -> str:
    """A pattern string that compiles; bounded in length so a terms file cannot make matching slow."""
    if not isinstance(p, str) or not p.strip():
        raise fail(source, field, f"expected a non-empty pattern string, got {type(p).__name__}")
    if len(p) > MAX_PATTERN_CHARS:
        raise fail(source, field, f"pattern longer than {MAX_PATTERN_CHARS} characters")
    if p != " ".join(p.split()) or all(t.endswith("?") and len(t) > 1 for t in p.split(" ")):
        raise fail(source, field, f"pattern {p[:80]!r} must be single-spaced words with at least one required word")
    try:
        compile_pattern(p, adverbs, be)
    except re.error as e:  # pragma: no cover - every piece is escaped
        raise fail(source, field, f"pattern {p[:80]!r} does not compile: {e}") from None
    return p


def _str_list(source: str, field: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise fail(source, field, "expected a list of non-empty strings")
    return [x.strip().lower() if " " not in x.strip() else x.strip() for x in v]


def _str_map(source: str, field: str, v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise fail(source, field, "expected a mapping of strings to strings")
    return {k.lower(): x for k, x in v.items()}


def _str_map_keep(source: str, field: str, v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise fail(source, field, "expected a mapping of strings to strings")
    return dict(v)


def observation_entry(source: str, field: str, name: str, p: Any, adverbs: tuple[str, ...], be: tuple[str, ...],
                      names: Any) -> ObservationPattern:
    """One synonym: a pattern string or {pattern, needs_lung, status, sign, also}."""
    if not isinstance(p, dict):
        return ObservationPattern(check_pattern(source, field, p, adverbs, be), name)
    extra = set(p) - {"pattern", "needs_lung", "status", "sign", "also"}
    if extra:
        raise fail(source, f"{field}.{sorted(extra)[0]}", "unknown key (known: pattern, needs_lung, status, sign, also)")
    if p.get("status", "present") not in ("present", "absent"):
        raise fail(source, f"{field}.status", "expected 'present' or 'absent'")
    for flag in ("needs_lung", "sign"):
        if not isinstance(p.get(flag, False), bool):
            raise fail(source, f"{field}.{flag}", "expected true or false")
    also = raw_list(source, f"{field}.also", p.get("also", []))
    if not all(isinstance(a, str) and a in names for a in also):
        raise fail(source, f"{field}.also", f"expected a list of observation names among: {', '.join(names)}")
    return ObservationPattern(check_pattern(source, f"{field}.pattern", p.get("pattern"), adverbs, be), name,
                              bool(p.get("needs_lung")), p.get("status") == "absent", bool(p.get("sign")), tuple(also))


def _spellings(source: str, v: Any) -> dict[str, tuple[str, ...]]:
    """``words.spellings``: right spelling -> its common misspellings (single lower-case words)."""
    if v is None:
        return {}
    ok = isinstance(v, dict) and all(
        isinstance(k, str) and PLAIN_WORD.fullmatch(k) and isinstance(xs, list)
        and all(isinstance(x, str) and PLAIN_WORD.fullmatch(x) for x in xs) for k, xs in v.items())
    if not ok:
        raise fail(source, "words.spellings", "expected a mapping of a word to a list of misspelled words")
    return {k.lower(): tuple(x.lower() for x in xs) for k, xs in v.items()}


def _phrases(source: str, v: Any, adverbs: tuple[str, ...], be: tuple[str, ...]
             ) -> tuple[tuple[str, str | None, str | None], ...]:
    """``places.phrases``: location phrases with the side and normalised location they stand for."""
    out = []
    for i, p in enumerate(raw_list(source, "places.phrases", v)):
        field = f"places.phrases[{i}]"
        if not isinstance(p, dict) or set(p) - {"pattern", "side", "location"}:
            raise fail(source, field, "expected a mapping with keys pattern, side, location")
        side, loc = p.get("side"), p.get("location")
        if side not in (None, "left", "right", "bilateral"):
            raise fail(source, f"{field}.side", "side must be left, right or bilateral")
        if loc is not None and (not isinstance(loc, str) or not loc.strip()):
            raise fail(source, f"{field}.location", "expected a location name")
        if side is None and loc is None:
            raise fail(source, field, "a phrase needs a side or a location")
        out.append((check_pattern(source, f"{field}.pattern", p.get("pattern"), adverbs, be), side, loc))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# sections of the vocabulary
# --------------------------------------------------------------------------------------------
def check_words(source: str, data: dict[str, Any]) -> dict[str, Any]:
    """``words``: checked first, since the adverbs and copulas are needed to compile every pattern."""
    words_in = data.get("words") or {}
    if not isinstance(words_in, dict):
        raise fail(source, "words", "expected a mapping")
    words: dict[str, Any] = {}
    words["spellings"] = _spellings(source, words_in.get("spellings"))
    for k in WORD_LISTS:
        vals = raw_list(source, f"words.{k}", words_in.get(k, []))
        if k == "sideless":
            if not all(isinstance(x, str) for x in vals):
                raise fail(source, f"words.{k}", "expected a list of observation names")
            words[k] = frozenset(vals)
        else:
            words[k] = _str_list(source, f"words.{k}", vals)
    for k in ("modifiers", "size_modifiers", "abbreviations", "sign_explained_by"):
        words[k] = frozenset(words[k])
    words["adverbs"], words["be"] = tuple(words["adverbs"]), tuple(words["be"])
    return words


def check_observations(source: str, data: dict[str, Any], words: dict[str, Any]) -> list[ObservationPattern]:
    """``not_findings`` and ``observations`` as one ordered list of synonyms, misspellings folded in."""
    adverbs, be, spellings = words["adverbs"], words["be"], words["spellings"]
    obs_in = data.get("observations")
    if not isinstance(obs_in, dict) or not obs_in:
        raise fail(source, "observations", "expected a non-empty mapping of observation -> list of patterns")
    observations: list[ObservationPattern] = []
    # word senses first: on a tie in length they win over a synonym ("vascular congestion" made no finding)
    for i, p in enumerate(data.get("not_findings") or []):
        observations.append(ObservationPattern(check_pattern(source, f"not_findings[{i}]", p, adverbs, be), None))
    for name, pats in obs_in.items():
        if not isinstance(name, str) or not name.strip():
            raise fail(source, "observations", f"observation names must be strings, got {name!r}")
        if not isinstance(pats, list):
            raise fail(source, f"observations.{name}", "expected a list of patterns")
        for i, p in enumerate(pats):
            observations.append(observation_entry(source, f"observations.{name}[{i}]", name, p, adverbs, be, obs_in))
    if spellings:
        observations = [op if (rs := respell(op.pattern, spellings)) == op.pattern else dataclasses.replace(op, pattern=rs)
                        for op in observations]
    return observations


def check_cues(source: str, data: dict[str, Any], words: dict[str, Any]
               ) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """``cues``: (cue lists by name, temporal word lists by kind), every known list present."""
    adverbs, be = words["adverbs"], words["be"]
    cues_in = data.get("cues") or {}
    if not isinstance(cues_in, dict):
        raise fail(source, "cues", "expected a mapping")
    unknown = set(cues_in) - set(CUE_LISTS) - {"temporal"}
    if unknown:
        raise fail(source, f"cues.{sorted(unknown)[0]}", f"unknown cue list (known: {', '.join(CUE_LISTS)}, temporal)")
    cues = {k: tuple(check_pattern(source, f"cues.{k}[{i}]", p, adverbs, be)
                     for i, p in enumerate(raw_list(source, f"cues.{k}", cues_in.get(k, []))))
            for k in CUE_LISTS}
    temporal_in = cues_in.get("temporal") or {}
    if not isinstance(temporal_in, dict) or set(temporal_in) - set(TEMPORAL):
        raise fail(source, "cues.temporal", f"expected a mapping with keys among {', '.join(TEMPORAL)}")
    temporal = {k: tuple(check_pattern(source, f"cues.temporal.{k}[{i}]", p, adverbs, be)
                         for i, p in enumerate(raw_list(source, f"cues.temporal.{k}", temporal_in.get(k, []))))
                for k in TEMPORAL}
    return cues, temporal


def check_places(source: str, data: dict[str, Any], words: dict[str, Any]
                 ) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """``places``: (side words, zone words, the other place lists), lung words with their misspellings."""
    adverbs, be, spellings = words["adverbs"], words["be"], words["spellings"]
    places_in = data.get("places") or {}
    if not isinstance(places_in, dict):
        raise fail(source, "places", "expected a mapping")
    sides = _str_map(source, "places.sides", places_in.get("sides", {}))
    bad = {v for v in sides.values()} - {"left", "right", "bilateral"}
    if bad:
        raise fail(source, "places.sides", f"side values must be left, right or bilateral, got {sorted(bad)[0]!r}")
    zones = _str_map(source, "places.zones", places_in.get("zones", {}))
    places: dict[str, Any] = {}
    for k in PLACE_LISTS:
        vals = raw_list(source, f"places.{k}", places_in.get(k, []))
        if k == "comparatives":
            places[k] = tuple(check_pattern(source, f"places.{k}[{i}]", p, adverbs, be) for i, p in enumerate(vals))
        elif k == "phrases":
            places[k] = _phrases(source, vals, adverbs, be)
        elif k == "prepositions":
            places[k] = tuple(_str_list(source, f"places.{k}", vals))
        else:
            places[k] = frozenset(_str_list(source, f"places.{k}", vals))
    places["lung_words"] = places["lung_words"] | {m for w in places["lung_words"] for m in spellings.get(w, ())}
    return sides, zones, places


def check_category_of(source: str, data: dict[str, Any]) -> dict[str, str]:
    """Observation -> category: every observation is its own category unless ``category_of`` says otherwise."""
    category_of = {o: o for o in data["observations"]}
    category_of.update(_str_map_keep(source, "category_of", data.get("category_of") or {}))
    return category_of
