"""Sentence -> mentions: observation cores from the lexicon (see `cores`), noun-phrase extension
(modifiers on the left, see `noun_phrase`; "of/in/at the <side> <zone>" on the right), side/location (see
`location`), the cue that applies (see `negation`) and the temporal status."""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, replace

from groundkit.reports import location as LOC
from groundkit.reports.cores import MAX_COORD_WORDS, core_index, find_cores  # noqa: F401 - MAX_COORD_WORDS is re-exported
from groundkit.reports.lexicon import Lexicon
from groundkit.reports.lexicon_fields import ObservationPattern
from groundkit.reports.location import TOKEN, Tok
from groundkit.reports.matcher import WORD, longest_first
from groundkit.reports.model import Mention, Span
from groundkit.reports.negation import CueSet, Scoped, assign_cues, find_cues, temporal_of
from groundkit.reports.noun_phrase import MAX_LEFT_WORDS, extend_left, modifiers, zone_words  # noqa: F401 - MAX_LEFT_WORDS is re-exported

__all__ = ["TOKEN", "sentence_mentions", "core_index"]

_INTERNAL_NEG = re.compile(r"\bnot\b", re.IGNORECASE)
_INTERNAL_UNC = re.compile(r"\b(?:likely|probably|possibly|borderline)\b", re.IGNORECASE)
_ATTACHED = frozenset({"underlying", "adjacent", "overlying", "associated", "superimposed", "surrounding"})
# described findings whose side a diagnosis in apposition takes ("retrocardiac density, atelectasis versus
# pneumonia")
_DESCRIBED = frozenset({"Lung Opacity", "Consolidation", "Pleural Effusion"})
_NORMAL_CUE = re.compile(r"within\s+normal\s+limits|within\s+limits\s+of\s+normal|normal(?:-sized)?|"
                         r"unremarkable|not\s+enlarged", re.IGNORECASE)
_INDICATION_SECTIONS = ("indication", "history", "comparison", "technique", "examination")



def _compose(text: str, mention_text: str, place: LOC.Place, sent_start: int) -> str:
    """The grounding phrase of a mention whose side/location was written elsewhere in the sentence."""
    piece = " ".join(text[place.start:place.end].split()).strip(" ,:")
    if not place.has_prep:
        words = piece.split(" ")
        if words and words[0].lower() in ("the", "a", "this"):
            piece = " ".join(words[1:])
    if piece[:1].isupper() and piece[1:2].islower():
        piece = piece[0].lower() + piece[1:]
    return f"{mention_text} {piece}" if place.has_prep else f"{mention_text}, {piece}"


MAX_INHERIT_GAP = 14  # tokens between a described finding and the diagnosis that takes its side


def _where(side: str | None, location: list[str]) -> str:
    """"left base", "right upper lobe", "bilateral": a short location phrase from normalised values."""
    return " ".join(x for x in (side, location[0] if location else None) if x)


def _inherit_from(lex: Lexicon, text: str, toks: list[Tok], tok_ranges: list[tuple[int, int]],
                  done: list[Mention], i: int, start_i: int, inherited: set[int], hedge=None) -> Mention | None:
    """The earlier finding of the sentence whose side a side-less finding takes: the nearest one with a
    side, when the words between attach a diagnosis to it ("left basilar opacity which could be
    infection", "left effusion with adjacent atelectasis", "... consistent with effusion and atelectasis"),
    or when the hedge that makes it uncertain stands between them ("left lower lobe opacity, cannot exclude
    early consolidation", "bibasilar opacities, suspicious for infection", "RLL opacity, ? pneumonia"), or it
    is given in parentheses ("left lower lobe pneumonia (consolidation)")."""
    links = lex.places["inherit_links"]
    own = {t.word for t in toks[tok_ranges[i][0]:tok_ranges[i][1]]}
    for j in range(i - 1, max(-1, i - 4), -1):
        src = done[j]
        if tok_ranges[i][0] - tok_ranges[j][1] > MAX_INHERIT_GAP:
            return None
        if src.laterality is None:
            continue
        gap = toks[tok_ranges[j][1]:tok_ranges[i][0]]
        if ";" in text[src.end:start_i]:
            return None
        between = text[src.end:start_i].strip()
        if any(t.word in links for t in gap) or between in ("/", "(") or own & _ATTACHED:
            return src
        if hedge is not None and src.end <= hedge.start and hedge.end <= start_i:
            return src
        if between == "," and src.observation in _DESCRIBED:
            return src
        if j in inherited and all(t.word in ("and", "or", "and/or") for t in gap):
            return src  # "consistent with small effusion and atelectatic changes"
        return None
    return None


def _slash_alternative(text: str, s: int, e: int, sent: Span) -> bool:
    """"atelectasis/scarring", "atelectasis/consolidation": a slash between two words offers alternatives."""
    after = e < sent[1] - 1 and text[e] == "/" and text[e + 1].isalpha() and not text[e + 1:e + 3].lower() == "or"
    before = s - 1 > sent[0] and text[s - 1] == "/" and text[s - 2].isalpha() and text[max(sent[0], s - 4):s - 1].lower() != "and"
    return after or before


def _resolve_signs(lex: Lexicon, text: str, toks: list[Tok], tok_starts: list[int], cores: list, out: list[Mention]
                   ) -> list[Mention | None]:
    """A sign ("blunting of the costophrenic angle") takes the status of the finding its sentence names
    ("... may be due to small pleural effusion": uncertain), and is no finding when the sentence explains it
    otherwise ("... likely represents pleural scarring")."""
    res: list[Mention | None] = list(out)
    for i, ((_, _, op), m) in enumerate(zip(cores, out)):
        if not op.sign:
            continue
        named = [x for (_, _, o), x in zip(cores, out) if x is not m and not o.sign and x.observation == m.observation]
        if named:
            ref = named[0]
            if not m.negated:
                res[i] = replace(m, negated=ref.negated, uncertain=ref.uncertain, negation_cue=ref.negation_cue,
                                 uncertainty_cue=ref.uncertainty_cue)
            continue
        k = bisect_left(tok_starts, m.end)
        if any(t.word in lex.words["sign_explained_by"] for t in toks[k:k + 12]):
            res[i] = None
    return res


def sentence_mentions(lex: Lexicon, text: str, sent: Span, section: str) -> list[Mention]:
    """Mentions of one sentence, with side, location, cues and temporal status.

    Stages: observation cores -> cues and the tokens they block -> noun-phrase spans -> side/location of
    each span, then places written elsewhere in the sentence -> cue scopes and temporal words -> one
    `Mention` per core -> fix-ups that need the neighbours (parenthesised sides, signs, ``also``)."""
    words = [(m.start(), m.group(0).lower()) for m in WORD.finditer(text, *sent)]
    every = core_index(lex).matches(text, sent[0], sent[1], words)
    found = find_cores(lex, text, sent, words, every)
    if found is None:
        return []
    chosen, shared, cores = found
    cueset = find_cues([(s, e, p[1]) for s, e, p in every if p[0] == "cue"], text, [(s, e) for s, e, _ in chosen])
    toks = [Tok(m.start(), m.end(), m.group(0).lower()) for m in TOKEN.finditer(text, *sent)]
    tok_starts = [t.start for t in toks]
    blocked, core_tok = _blocked_tokens(cueset, cores, tok_starts)
    comp_found = longest_first([x for x in every if x[2][0] == "comparative"])
    comps = [(s, e) for s, e, _ in comp_found]
    comp_values = {(s, e): p[1] for s, e, p in comp_found if p[1] is not None}
    spans = _phrase_spans(lex, text, sent, toks, cores, core_tok, blocked, comps)
    tok_ranges = [(bisect_left(tok_starts, s), bisect_left(tok_starts, e)) for s, e in spans]
    descs = _describe_spans(lex, text, toks, cores, spans, tok_ranges, shared, comps, comp_values)
    attached = _attached_places(lex, text, toks, cores, descs, spans, tok_ranges, blocked, comps, comp_values)
    size_words = [any(t.word in lex.words["size_modifiers"] for t in toks[a:b]) for a, b in tok_ranges]
    scoped = assign_cues(text, spans, cueset, tok_starts, size_words)
    temporal_matches = [(s, e, p[1]) for s, e, p in every if p[0] == "temporal"]
    if temporal_matches or any(c.kind == "pseudo" for c in cueset.cues):
        temporal = temporal_of(temporal_matches, cueset, spans, scoped, tok_starts)
    else:
        temporal = [None] * len(spans)
    ctx = _Sentence(lex, text, sent, section, toks, cores, core_tok, spans, tok_ranges, descs, attached, scoped,
                    temporal)
    out: list[Mention] = []
    inherited: set[int] = set()
    for i in range(len(cores)):
        out.append(_mention(ctx, i, out, inherited))
    _side_from_parenthesis(lex, text, out)
    resolved = _resolve_signs(lex, text, toks, tok_starts, cores, out)
    return _with_also(lex, cores, resolved)



def _blocked_tokens(cueset: CueSet, cores: list, tok_starts: list[int]) -> tuple[set[int], list[tuple[int, int]]]:
    """(tokens of cues and cores, which no noun phrase may take; token range of each core)."""
    blocked: set[int] = set()
    for c in cueset.cues:
        blocked.update(range(bisect_left(tok_starts, c.start), bisect_left(tok_starts, c.end)))
    core_tok: list[tuple[int, int]] = []
    for s, e, _ in cores:
        a, b = bisect_left(tok_starts, s), bisect_left(tok_starts, e)
        core_tok.append((a, b))
        blocked.update(range(a, b))
    return blocked, core_tok


def _phrase_spans(lex: Lexicon, text: str, sent: Span, toks: list[Tok], cores: list, core_tok: list[tuple[int, int]],
                  blocked: set[int], comps: list[Span]) -> list[Span]:
    """The noun phrase of each core: modifiers and places on the left, location phrases on the right."""
    # left modifiers bind tighter than a previous finding's trailing location phrase: extend left first
    lefts = [extend_left(lex, text, toks, a - 1, s, cores[i - 1][1] if i else sent[0], blocked)
             for i, ((s, _, _), (a, _)) in enumerate(zip(cores, core_tok))]
    spans: list[Span] = []
    for i, (s, e, _) in enumerate(cores):
        hi = lefts[i + 1] if i + 1 < len(cores) else sent[1]
        spans.append((lefts[i], LOC.extend_right(lex, text, toks, core_tok[i][1], e, hi, blocked, comps)))
    return spans


def _describe_spans(lex: Lexicon, text: str, toks: list[Tok], cores: list, spans: list[Span],
                    tok_ranges: list[tuple[int, int]], shared: set[int], comps: list[Span], comp_values: dict) -> list:
    """Side and location written inside each noun phrase (see `location.describe`)."""
    descs = []
    for (s, e), (a, b), (cs, _, _) in zip(spans, tok_ranges, cores):
        bil = [c for c in comps if s <= c[0] and c[1] <= e]
        d = LOC.describe(lex, toks[a:b], bil, comp_values)
        if cs in shared:
            # "small pleural and pericardial effusions": the plural counts the coordinated things, not sides
            if d.side == "bilateral" and text[d.side_span[0]:d.side_span[1]].lower() in lex.places["plural_bilateral"]:
                d.side, d.side_span = None, None
        descs.append(d)
    return descs


def _attached_places(lex: Lexicon, text: str, toks: list[Tok], cores: list, descs: list, spans: list[Span],
                     tok_ranges: list[tuple[int, int]], blocked: set[int], comps: list[Span], comp_values: dict
                     ) -> list[LOC.Place | None]:
    """For each side-less mention, a place written elsewhere in the sentence that it takes, if any
    ("effusion is seen at the left base")."""
    taken = set(blocked)
    for a, b in tok_ranges:
        taken.update(range(a, b))
    sideless = lex.words["sideless"]
    can_take = [op.observation not in sideless and d.side is None for (_, _, op), d in zip(cores, descs)]
    attached: list[LOC.Place | None] = [None] * len(cores)
    if any(can_take):
        free = [c for c in comps if not any(s <= c[0] < e for s, e in spans)] if comps else []
        places = LOC.detached_places(lex, text, toks, taken, free, comp_values)
        if places:
            attached = LOC.attach_places(lex, text, toks, tok_ranges, can_take, places)
    return attached


@dataclass(frozen=True)
class _Sentence:
    """What the stages of `sentence_mentions` found in one sentence, per core (lists are parallel)."""

    lex: Lexicon
    text: str
    sent: Span
    section: str
    toks: list[Tok]
    cores: list
    core_tok: list[tuple[int, int]]
    spans: list[Span]
    tok_ranges: list[tuple[int, int]]
    descs: list
    attached: list
    scoped: list[Scoped]
    temporal: list[str | None]


def _cue_texts(op: ObservationPattern, core_text: str, sc: Scoped) -> tuple[str | None, str | None, str]:
    """(negation cue, uncertainty cue, flag) of a mention: words inside its own core ("heart is not
    enlarged", "normal heart size") come before the cue whose scope covers it."""
    if op.absent:
        m = _NORMAL_CUE.search(core_text)
        return (m.group(0) if m else core_text), None, ""
    if op.observation != "No Finding" and _INTERNAL_NEG.search(core_text):
        return _INTERNAL_NEG.search(core_text).group(0), None, ""
    if op.observation != "No Finding" and _INTERNAL_UNC.search(core_text):
        return None, _INTERNAL_UNC.search(core_text).group(0), ""
    if sc.cue is not None:
        if sc.cue.kind == "negation":
            return sc.cue.text, None, sc.flag
        return None, sc.cue.text, sc.flag
    return None, None, ""


def _mention(ctx: _Sentence, i: int, done: list[Mention], inherited: set[int]) -> Mention:
    """Mention i of the sentence; ``done`` holds the ones before it (a side-less finding may take the side
    of one of them, and then joins ``inherited``)."""
    lex, text, sent = ctx.lex, ctx.text, ctx.sent
    (s, e), (cs, ce, op), sc = ctx.spans[i], ctx.cores[i], ctx.scoped[i]
    a, b = ctx.tok_ranges[i]
    ws = [t.word for t in ctx.toks[a:b]]
    core_words = {t.word for t in ctx.toks[ctx.core_tok[i][0]:ctx.core_tok[i][1]]}
    d = ctx.descs[i]
    neg_cue, unc_cue, flag = _cue_texts(op, text[cs:ce], sc)
    side, side_span = d.side, d.side_span
    location, loc_spans = list(d.location), list(d.location_spans)
    mtext = text[s:e]
    phrase = mtext
    p = ctx.attached[i]
    if p is not None and (p.side or p.location):
        if side is None and p.side is not None:
            side, side_span = p.side, p.side_span
        for name, sp in zip(p.location, p.location_spans):
            if name not in location:
                location.append(name)
                loc_spans.append(sp)
        phrase = _compose(text, mtext, p, sent[0])
    if side is None and p is None and i > 0 and op.observation not in lex.words["sideless"]:
        hedge = sc.cue if (unc_cue is not None and sc.cue is not None and flag != "indication") else None
        src = _inherit_from(lex, text, ctx.toks, ctx.tok_ranges, done, i, s, inherited, hedge)
        if src is not None:
            inherited.add(i)
            side, side_span = src.laterality, src.side_span
            location, loc_spans = list(src.location), list(src.location_spans)
            phrase = f"{mtext}, {_where(src.laterality, src.location)}"
    temp = "resolved" if flag == "resolved" else ctx.temporal[i]
    if neg_cue is None and unc_cue is None and _slash_alternative(text, s, e, sent):
        unc_cue = "/"
    in_indication = ctx.section.split("_")[0] in _INDICATION_SECTIONS
    return Mention(
        text=mtext, start=s, end=e, category=lex.category(op.observation), observation=op.observation,
        laterality=side, zones=zone_words(lex, ws), modifiers=modifiers(lex, ws, core_words), negated=neg_cue is not None,
        uncertain=unc_cue is not None, negation_cue=neg_cue, uncertainty_cue=unc_cue, sentence=text[sent[0]:sent[1]],
        sentence_span=sent, section=ctx.section, core=(cs, ce), location=location, side_span=side_span,
        location_spans=loc_spans, phrase=phrase, temporal=temp,
        indication=in_indication or flag == "indication" or temp == "historical",
    )


def _side_from_parenthesis(lex: Lexicon, text: str, out: list[Mention]) -> None:
    """A side-less finding followed by a parenthesised one takes its side ("pneumonia (left lower lobe
    consolidation)"); in place."""
    sideless = lex.words["sideless"]
    for i in range(len(out) - 1):
        m, n = out[i], out[i + 1]
        if m.laterality is None and n.laterality is not None and m.observation not in sideless \
                and text[m.end:n.start].strip() == "(":
            out[i] = replace(m, laterality=n.laterality, side_span=n.side_span, location=list(n.location),
                             location_spans=list(n.location_spans), phrase=f"{m.text}, {_where(n.laterality, n.location)}")


def _with_also(lex: Lexicon, cores: list, out: list[Mention | None]) -> list[Mention]:
    """The kept mentions plus one copy for each further observation their words state ("hydropneumothorax":
    effusion too), in text order."""
    extra = []
    for (_, _, op), m in zip(cores, out):
        for obs in (op.also if m is not None else ()):
            extra.append(replace(m, observation=obs, category=lex.category(obs)))
    return sorted([m for m in out if m is not None] + extra, key=lambda m: (m.start, m.observation))
