"""Inline SVG charts for the benchmark page: a reliability diagram and a risk-coverage curve.

Plain SVG strings (no script, no external reference), so benchmark.html (the benchmark page) stays one self-contained, inert file.
Every text is escaped; every plotted point carries its values as data-* attributes, so what is drawn can be
checked against the rows it came from.
"""
from __future__ import annotations

import html
from typing import Mapping, Sequence

__all__ = ["reliability_svg", "risk_coverage_svg"]

W, H = 360, 316
LEFT, RIGHT, TOP, BOTTOM = 48, 14, 14, 58
PW, PH = W - LEFT - RIGHT, H - TOP - BOTTOM
BAR, POINT, DIAG = "#9ecae1", "#08519c", "#999999"
CURVE, RANDOM, ORACLE = "#d94801", "#737373", "#238b45"


def _x(v: float) -> float:
    return round(LEFT + max(0.0, min(1.0, v)) * PW, 2)


def _y(v: float) -> float:
    return round(TOP + (1.0 - max(0.0, min(1.0, v))) * PH, 2)


def _num(v: float) -> str:
    return f"{v:.6g}"


def _frame(title: str, xlabel: str, ylabel: str, body: list[str], cls: str,
           legend: Sequence[tuple[str, str, str]]) -> str:
    """Axes with ticks at 0, .5, 1 around ``body``, a legend row [(name, colour, dash)] under the x label (never
    over the data); the chart scales down with its container, never overflows."""
    e = html.escape
    out = [f"<svg class='chart {e(cls)}' role='img' viewBox='0 0 {W} {H}' width='{W}' height='{H}' "
           f"xmlns='http://www.w3.org/2000/svg' style='max-width:100%;height:auto'>", f"<title>{e(title)}</title>"]
    for t in (0.0, 0.5, 1.0):
        out.append(f"<line x1='{_x(0)}' y1='{_y(t)}' x2='{_x(1)}' y2='{_y(t)}' stroke='#eee'/>")
        out.append(f"<text x='{LEFT - 6}' y='{_y(t) + 4}' font-size='11' text-anchor='end'>{t:g}</text>")
        out.append(f"<text x='{_x(t)}' y='{TOP + PH + 15}' font-size='11' text-anchor='middle'>{t:g}</text>")
    out.append(f"<rect x='{LEFT}' y='{TOP}' width='{PW}' height='{PH}' fill='none' stroke='#888'/>")
    out += body
    out.append(f"<text x='{LEFT + PW / 2}' y='{TOP + PH + 31}' font-size='12' text-anchor='middle'>{e(xlabel)}</text>")
    x = 6
    for name, color, dash in legend:
        d = f" stroke-dasharray='{dash}'" if dash else ""
        out.append(f"<line x1='{x}' y1='{H - 10}' x2='{x + 16}' y2='{H - 10}' stroke='{color}' stroke-width='2'{d}/>"
                   f"<text class='legend' x='{x + 20}' y='{H - 6}' font-size='10'>{e(name)}</text>")
        x += 28 + 6 * len(name)
    out.append(f"<text x='12' y='{TOP + PH / 2}' font-size='12' text-anchor='middle' "
               f"transform='rotate(-90 12 {TOP + PH / 2})'>{e(ylabel)}</text>")
    return "\n".join(out + ["</svg>"])


def reliability_svg(bins: Sequence[Mapping[str, float]], title: str) -> str:
    """Reliability diagram: per non-empty confidence bin a bar (bin width, height = observed rate of IoU >= 0.3)
    with its count above, a dot at (mean confidence, observed rate), and the diagonal of perfect calibration."""
    body = []
    for b in bins:
        x0, x1, top = _x(b["lo"]), _x(b["hi"]), _y(b["hit_rate"])
        body.append(f"<rect class='bin' data-bin='{int(b['bin'])}' data-confidence='{_num(b['confidence'])}' "
                    f"data-hit-rate='{_num(b['hit_rate'])}' data-n='{int(b['n'])}' x='{x0 + 1}' y='{top}' "
                    f"width='{round(x1 - x0 - 2, 2)}' height='{round(_y(0) - top, 2)}' fill='{BAR}'/>")
        body.append(f"<circle class='point' cx='{_x(b['confidence'])}' cy='{top}' r='3' fill='{POINT}'/>")
        body.append(f"<text class='count' x='{round((x0 + x1) / 2, 2)}' y='{round(max(TOP + 9, top - 4), 2)}' "
                    f"font-size='9' text-anchor='middle'>{int(b['n'])}</text>")
    body.append(f"<line class='diagonal' x1='{_x(0)}' y1='{_y(0)}' x2='{_x(1)}' y2='{_y(1)}' stroke='{DIAG}' "
                "stroke-dasharray='4 3'/>")  # over the bars: the gap to it is the miscalibration
    return _frame(title, "confidence (predicted P(IoU ≥ 0.3))", "observed rate of IoU ≥ 0.3", body, "reliability",
                  [("observed rate", BAR, ""), ("mean confidence", POINT, ""), ("perfect calibration", DIAG, "4 3")])


def _polyline(cls: str, pts: Sequence[tuple[float, float]], color: str, dash: str = "") -> str:
    d = f" stroke-dasharray='{dash}'" if dash else ""
    xy = " ".join(f"{_x(c)},{_y(r)}" for c, r in pts)
    return f"<polyline class='{cls}' points='{xy}' fill='none' stroke='{color}' stroke-width='2'{d}/>"


def risk_coverage_svg(points: Sequence[Mapping[str, float]], title: str) -> str:
    """Risk (1 - IoU) against coverage for the confidence order, with the random- and oracle-order baselines;
    each confidence-order point is a circle carrying its coverage, risk and n kept."""
    conf = [(p["coverage"], p["risk"]) for p in points]
    body = [_polyline("random", [(p["coverage"], p["risk_random"]) for p in points], RANDOM, "5 4"),
            _polyline("oracle", [(p["coverage"], p["risk_oracle"]) for p in points], ORACLE, "2 3"),
            _polyline("curve", conf, CURVE)]
    for p in points:
        body.append(f"<circle class='point' data-coverage='{_num(p['coverage'])}' data-risk='{_num(p['risk'])}' "
                    f"data-n='{int(p['n_kept'])}' cx='{_x(p['coverage'])}' cy='{_y(p['risk'])}' r='3' fill='{CURVE}'/>")
    return _frame(title, "coverage (most confident share kept)", "risk = 1 − mean IoU", body, "risk-coverage",
                  [("confidence order", CURVE, ""), ("random order", RANDOM, "5 4"), ("oracle order", ORACLE, "2 3")])
