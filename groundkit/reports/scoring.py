"""Report-level labels from a parsed report, and the figures the parser is judged by.

A report is scored per MS-CXR category (present / uncertain / absent / not mentioned, plus the side of the
non-negated mentions), the way human report indexing works: one label per category per report, not one per
mention. Used by ``benchmarks/report_parser.py`` and the dev-set tests.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from groundkit.reports.lexicon import MSCXR_CATEGORIES
from groundkit.reports.model import ParsedReport

__all__ = ["Label", "report_labels", "Scores", "score", "union_side", "norm_location"]

_RANK = {"absent": 0, "uncertain": 1, "present": 2}
# the parser's normalised locations -> the coarse vocabulary of the development set
_COARSE = {"costophrenic angle": "costophrenic", "cardiophrenic angle": "base", "infrahilar": "hilum",
           "suprahilar": "hilum", "subpleural": "", "apex": "apex"}


@dataclass
class Label:
    status: str  # "present" | "uncertain" | "absent"
    side: str | None = None
    location: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "side": self.side, "location": list(self.location)}


def union_side(sides: Iterable[str | None]) -> str | None:
    """Union of sides: left + right = bilateral; None when no side is stated."""
    got = {s for s in sides if s}
    if not got:
        return None
    if "bilateral" in got or {"left", "right"} <= got:
        return "bilateral"
    return got.pop()


def norm_location(name: str) -> str:
    """"lower lobe" / "lower zone" -> "lower", "costophrenic angle" -> "costophrenic", ..."""
    if name in _COARSE:
        return _COARSE[name]
    for suffix in (" lobe", " zone"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def report_labels(parsed: ParsedReport, categories: Iterable[str] = MSCXR_CATEGORIES) -> dict[str, Label]:
    """Per category: present if any firm positive mention, else uncertain if any hedged one, else absent if
    any negated one; not in the dict when not mentioned. Mentions that were only asked about (indication)
    are ignored. Side/location: union over the non-negated mentions."""
    cats = set(categories)
    out: dict[str, Label] = {}
    sides: dict[str, list[str | None]] = {}
    for m in parsed.mentions:
        if m.category not in cats or m.indication:
            continue
        st = m.status
        cur = out.get(m.category)
        if cur is None or _RANK[st] > _RANK[cur.status]:
            out[m.category] = cur = Label(st) if cur is None else Label(st, cur.side, cur.location)
        if st != "absent":
            sides.setdefault(m.category, []).append(m.laterality)
            for z in m.location:
                z = norm_location(z)
                if z and z not in cur.location:
                    cur.location.append(z)
    for cat, lab in out.items():
        lab.side = union_side(sides.get(cat, [])) if lab.status != "absent" else None
        if lab.status == "absent":
            lab.location = []
    return out


@dataclass
class Scores:
    """Counts accumulated over reports; properties give the published figures."""

    categories: tuple[str, ...] = MSCXR_CATEGORIES
    tp: dict[str, int] = field(default_factory=dict)
    fp: dict[str, int] = field(default_factory=dict)
    fn: dict[str, int] = field(default_factory=dict)
    firm: list[int] = field(default_factory=lambda: [0, 0, 0])  # tp, fp, fn with uncertain = absent
    neg: list[int] = field(default_factory=lambda: [0, 0, 0])  # tp, fp, fn of "absent" (mentioned, negated)
    side_ok: int = 0
    side_n: int = 0
    side_present_ok: int = 0
    side_present_n: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, gold: dict[str, dict[str, Any]], pred: dict[str, Label], item_id: str = "") -> None:
        for c in self.categories:
            g, p = gold.get(c), pred.get(c)
            gs, ps = (g or {}).get("status"), p.status if p else None
            gpos, ppos = gs in ("present", "uncertain"), ps in ("present", "uncertain")
            self.tp[c] = self.tp.get(c, 0) + (gpos and ppos)
            self.fp[c] = self.fp.get(c, 0) + (ppos and not gpos)
            self.fn[c] = self.fn.get(c, 0) + (gpos and not ppos)
            gf, pf = gs == "present", ps == "present"
            self.firm[0] += gf and pf
            self.firm[1] += pf and not gf
            self.firm[2] += gf and not pf
            ga, pa = gs == "absent", ps == "absent"
            self.neg[0] += ga and pa
            self.neg[1] += pa and not ga
            self.neg[2] += ga and not pa
            side_err = False
            if gpos and g.get("side"):
                ok = ppos and p.side == g["side"]
                self.side_ok += ok
                self.side_n += 1
                side_err = not ok
                if gs == "present":
                    self.side_present_ok += ok
                    self.side_present_n += 1
            if gs != ps or side_err:
                self.errors.append({"id": item_id, "category": c, "gold": gs, "pred": ps,
                                    "gold_side": (g or {}).get("side"), "pred_side": p.side if p else None})

    @staticmethod
    def _f1(tp: int, fp: int, fn: int) -> float:
        return 2 * tp / max(2 * tp + fp + fn, 1)

    def category_f1(self, c: str) -> float:
        return self._f1(self.tp.get(c, 0), self.fp.get(c, 0), self.fn.get(c, 0))

    def category_pr(self, c: str) -> tuple[float, float]:
        tp, fp, fn = self.tp.get(c, 0), self.fp.get(c, 0), self.fn.get(c, 0)
        return tp / max(tp + fp, 1), tp / max(tp + fn, 1)

    @property
    def micro_f1(self) -> float:
        return self._f1(sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values()))

    @property
    def macro_f1(self) -> float:
        return sum(self.category_f1(c) for c in self.categories) / len(self.categories)

    @property
    def firm_f1(self) -> float:
        return self._f1(*self.firm)

    @property
    def negation_f1(self) -> float:
        return self._f1(*self.neg)

    @property
    def side_accuracy(self) -> float:
        return self.side_ok / max(self.side_n, 1)

    @property
    def side_accuracy_present(self) -> float:
        return self.side_present_ok / max(self.side_present_n, 1)

    def summary(self) -> dict[str, Any]:
        return {"presence_micro_f1": self.micro_f1, "presence_macro_f1": self.macro_f1,
                "firm_micro_f1": self.firm_f1, "negation_f1": self.negation_f1,
                "side_accuracy": self.side_accuracy, "side_accuracy_present": self.side_accuracy_present,
                "side_n": self.side_n, "per_category_f1": {c: self.category_f1(c) for c in self.categories}}


def score(items: Iterable[dict[str, Any]], parse) -> Scores:
    """Score ``parse`` (text -> ParsedReport) on dev-set items ({"id", "text", "labels"})."""
    s = Scores()
    for it in items:
        s.add(it["labels"], report_labels(parse(it["text"])), it.get("id", ""))
    return s
