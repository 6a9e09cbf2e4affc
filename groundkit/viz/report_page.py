"""One self-contained, interactive HTML page for a grounded radiology report.

:func:`render_report_page` turns a JSON-ready ``data`` dict (images as base64 PNGs) into ONE HTML
document with inline CSS and JS only: no network, no external file, so it works opened from file://.

Layout: the chest X-ray on the left with every positive finding's mask OUTLINED in its own colour (stacked,
absolutely positioned ``<img>`` layers; outlines, never fills, so no finding hides another; the active
finding's region is tinted lightly when a ``mask_png`` is given); the report text on the right (below on narrow screens), where
every mention of a finding is a ``<span class="mention" data-finding="ID">`` tinted and underlined in
that finding's colour. Negated mentions are struck through, uncertain ones dash-underlined, and their
``title`` says why. Hovering a positive mention (or its legend item) previews that finding's heatmap in
the ``#heatmap`` layer; clicking it, or Enter/Space when it has the keyboard focus, pins it (Escape
unpins). The active finding is ``#viewer[data-active]``. An opacity slider (``#opacity``) sets the
heatmap layer's opacity. A legend lists all findings with their flags and metrics, each grounded one with a
checkbox (``.toggle``) that shows or hides its outline; a footer the run.

Input::

    {"title": str, "image_png": b64, "width": int, "height": int, "report": str,
     "findings": [{"id", "label", "category", "color", "negated", "uncertain", "cue",
                   "mentions": [{"start", "end"}], "heatmap_png": b64|None, "contour_png": b64|None,
                   "mask_png": b64|None (optional: the mask as an RGBA tint), "metrics": {name: number}|None,
                   "confidence": float|None (optional), "confidence_note": str (optional, e.g. "uncalibrated"),
                   "localised": bool (optional, default true; false: below min_confidence, listed apart, not drawn)}],
     "min_confidence": float|None (optional),
     "footer": {key: value}}

Mentions are character spans into ``report``; spans that overlap an earlier one (by start) are dropped
from the text (the finding stays in the legend), spans outside the text are clipped.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import Any, Mapping, Sequence

__all__ = ["render_report_page"]

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_FALLBACK_COLOR = "#888888"
MAX_WIDTH = 720  # px: the image is shown at its own size, at most this wide

_CSS = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;background:#fff;margin:0 auto;
 max-width:1400px;padding:1em 1.2em;line-height:1.45}
h1{font-size:1.45em;margin:.2em 0 .6em;overflow-wrap:anywhere}
h2{font-size:1.05em;margin:.9em 0 .4em;color:#444}
.layout{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.left{min-width:0;max-width:100%}
.right{flex:1 1 320px;min-width:0;max-width:100%}
#viewer{position:relative;max-width:min(100%,720px);background:#000;line-height:0}
#viewer img{display:block;user-select:none}
#viewer .base{width:100%;height:auto}
#viewer .layer{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}
#viewer[data-active] .contour{opacity:.35}
#viewer[data-active] .contour.active{opacity:1}
#viewer .fill{display:none}
#viewer .fill.active{display:block}
#viewer img.layer[hidden]{display:none}
.toggle{margin:0 .15em 0 0;align-self:center;cursor:pointer}
#heatmap[hidden]{display:none}
.controls{margin:.6em 0;display:flex;flex-wrap:wrap;align-items:center;gap:.5em;font-size:.9em}
.controls input{width:12em;max-width:100%}
.report{white-space:pre-wrap;overflow-wrap:anywhere;word-break:normal;font-size:1em;margin:0;
 padding:.8em 1em;background:#fafafa;border:1px solid #e3e3e3;border-radius:6px}
.mention{background:var(--tint);text-decoration:underline 2px var(--c);text-underline-offset:3px;border-radius:3px;
 cursor:pointer;outline-offset:2px;padding:0 1px}
.mention.uncertain{text-decoration:underline dashed 2px var(--c)}
.mention.negated{text-decoration:line-through 2px var(--c);cursor:help;opacity:.8}
.mention.active{background:var(--strong);box-shadow:0 0 0 2px var(--c)}
.mention:focus-visible,.legend-item:focus-visible{outline:2px solid #1a73e8}
.legend{list-style:none;padding:0;margin:0;display:flex;flex-direction:column;gap:.25em;font-size:.9em}
.legend-item{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4em;padding:.2em .4em;border-radius:4px;
 border:1px solid transparent;overflow-wrap:anywhere;cursor:pointer}
.legend-item.negated{cursor:default;color:#666}
.legend-item.active{border-color:var(--c);background:var(--tint)}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;background:var(--c);flex:none;align-self:center}
.cat{color:#555}.flag{font-size:.8em;padding:0 .35em;border-radius:3px;background:#eee;color:#444}
.metrics{font-size:.8em;color:#555;font-variant-numeric:tabular-nums}
footer{margin-top:1.5em;border-top:1px solid #ddd;padding-top:.5em;font-size:.8em;color:#555}
footer ul{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.3em 1.4em}
footer li{overflow-wrap:anywhere;min-width:0}
footer .k{font-weight:600;color:#333}
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gk-data").textContent);
  var viewer = document.getElementById("viewer");
  var heat = document.getElementById("heatmap");
  var slider = document.getElementById("opacity");
  var shown = document.getElementById("opacity-value");
  var pinned = null;
  var targets = document.querySelectorAll(".mention[data-finding], .legend-item[data-finding], .contour[data-finding], "
                                          + ".fill[data-finding]");

  function show(id) {
    var ok = id !== null && Object.prototype.hasOwnProperty.call(data.positive, id);
    targets.forEach(function (el) { el.classList.toggle("active", ok && el.getAttribute("data-finding") === id); });
    if (!ok) {
      viewer.removeAttribute("data-active");
      heat.hidden = true;
      heat.removeAttribute("src");
      return;
    }
    viewer.setAttribute("data-active", id);
    var src = data.heatmaps[id];
    if (src) { heat.src = src; heat.hidden = false; } else { heat.hidden = true; heat.removeAttribute("src"); }
  }
  function pin(id) { pinned = id; show(id); }

  document.querySelectorAll(".mention[data-finding], .legend-item[data-finding]").forEach(function (el) {
    var id = el.getAttribute("data-finding");
    if (!Object.prototype.hasOwnProperty.call(data.positive, id)) { return; }
    el.addEventListener("mouseenter", function () { show(id); });
    el.addEventListener("mouseleave", function () { show(pinned); });
    el.addEventListener("click", function () { pin(id); });
    el.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " " || e.key === "Spacebar") { e.preventDefault(); pin(id); }
    });
  });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { pin(null); } });
  document.querySelectorAll("input.toggle[data-toggle]").forEach(function (box) {
    var id = box.getAttribute("data-toggle");
    function apply() {
      viewer.querySelectorAll(".layer[data-finding]").forEach(function (el) {
        if (el.getAttribute("data-finding") === id) { el.hidden = !box.checked; }
      });
    }
    box.addEventListener("click", function (e) { e.stopPropagation(); });
    box.addEventListener("keydown", function (e) { e.stopPropagation(); });
    box.addEventListener("change", apply);
    apply();
  });
  function setOpacity() {
    heat.style.opacity = slider.value;
    shown.textContent = Number(slider.value).toFixed(2);
  }
  slider.addEventListener("input", setOpacity);
  slider.addEventListener("change", setOpacity);
  setOpacity();
})();
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_url(b64: str | None) -> str | None:
    """``data:image/png;base64,...`` for a base64 PNG (a value that already is a data URL is kept)."""
    if not b64:
        return None
    b64 = str(b64).strip()
    if b64.startswith("data:image/"):
        return b64
    return "data:image/png;base64," + re.sub(r"\s+", "", b64)


def _color(value: Any) -> tuple[str, str, str]:
    """(colour, light tint, stronger tint) as CSS values; anything but #rgb / #rrggbb falls back to grey."""
    c = str(value or "").strip()
    c = c if _HEX.match(c) else _FALLBACK_COLOR
    h = c[1:]
    if len(h) == 3:
        h = "".join(ch * 2 for ch in h)
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return c, f"rgba({r},{g},{b},0.16)", f"rgba({r},{g},{b},0.34)"


def _style(f: Mapping) -> str:
    c, tint, strong = _color(f.get("color"))
    return f"--c:{c};--tint:{tint};--strong:{strong}"


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _positive(f: Mapping) -> bool:
    return not f.get("negated") and f.get("localised", True) is not False


def _abstained(f: Mapping) -> bool:
    """Grounded, but its confidence was below min_confidence: listed apart, no region drawn."""
    return not f.get("negated") and f.get("localised", True) is False


def _confidence_html(f: Mapping) -> str:
    c = f.get("confidence")
    if isinstance(c, (int, float)):
        return f"<span class='confidence' data-confidence='{float(c):.3f}'>confidence {float(c):.2f}</span>"
    note = f.get("confidence_note")
    return f"<span class='confidence' data-confidence=''>confidence: {_esc(note)}</span>" if note else ""


def _not_localised_html(findings: Sequence[Mapping], min_confidence: Any) -> str:
    gone = [f for f in findings if _abstained(f)]
    if not gone:
        return ""
    below = f" (confidence below {float(min_confidence):.2f})" if isinstance(min_confidence, (int, float)) else ""
    items = "".join(f"<li class='not-localised-item' data-finding='{_esc(f['id'])}' style='{_style(f)}'>"
                    f"<span class='swatch'></span><span class='label'>{_esc(f.get('label') or '')}</span>"
                    f"<span class='cat'>({_esc(f.get('category') or '')})</span>{_confidence_html(f)}</li>" for f in gone)
    return (f"<h2>Not localised{below}</h2><p class='hint' style='font-size:.85em;color:#555;margin:0 0 .5em'>Mentioned "
            "as present, but the map is not trusted: no region is drawn.</p>"
            f"<ul class='legend not-localised' id='not-localised'>{items}</ul>")


def _title(f: Mapping) -> str:
    cue = f.get("cue")
    head = f"{f.get('category') or 'finding'}: {f.get('label') or ''}".strip()
    if f.get("negated"):
        return f"negated by '{cue}': not grounded" if cue else "negated: not grounded"
    if _abstained(f):
        c = f.get("confidence")
        return f"{head}: not localised" + (f" (confidence {float(c):.2f})" if isinstance(c, (int, float)) else "")
    if f.get("uncertain"):
        return f"{head} (uncertain: hedged by '{cue}')" if cue else f"{head} (uncertain)"
    return head


def _spans(text: str, findings: Sequence[Mapping]) -> list[tuple[int, int, Mapping]]:
    """Every mention as (start, end, finding), sorted, clipped to the text, without overlaps."""
    spans = []
    for f in findings:
        for m in f.get("mentions") or ():
            s, e = max(0, int(m["start"])), min(len(text), int(m["end"]))
            if e > s:
                spans.append((s, e, f))
    spans.sort(key=lambda t: (t[0], t[1]))
    out: list[tuple[int, int, Mapping]] = []
    for s, e, f in spans:
        if not out or s >= out[-1][1]:
            out.append((s, e, f))
    return out


def _report_html(text: str, findings: Sequence[Mapping]) -> str:
    parts, pos = [], 0
    for s, e, f in _spans(text, findings):
        parts.append(_esc(text[pos:s]))
        cls = ("mention" + (" negated" if f.get("negated") else "") + (" uncertain" if f.get("uncertain") else "")
               + (" not-localised" if _abstained(f) else ""))
        role = " role='button'" if _positive(f) else ""
        parts.append(f"<span class='{cls}' tabindex='0'{role} data-finding='{_esc(f['id'])}' style='{_style(f)}' "
                     f"title='{_esc(_title(f))}'>{_esc(text[s:e])}</span>")
        pos = e
    parts.append(_esc(text[pos:]))
    return "".join(parts)


def _viewer_html(data: Mapping, findings: Sequence[Mapping]) -> str:
    w, h = int(data.get("width") or 0), int(data.get("height") or 0)
    size = f" width='{w}' height='{h}'" if w > 0 and h > 0 else ""
    style = f" style='width:{min(max(w, 480), 720)}px'" if w > 0 else ""  # small images shown larger, big ones smaller
    layers = [f"<img class='base' src='{_esc(_data_url(data.get('image_png')) or '')}'{size} alt='chest X-ray'>",
              "<img id='heatmap' class='layer' alt='' hidden style='opacity:0.6'>"]
    for f in findings:  # the tints first: every outline stays on top of every tint
        src = _data_url(f.get("mask_png"))
        if src and _positive(f):
            layers.append(f"<img class='layer fill' data-finding='{_esc(f['id'])}' src='{_esc(src)}'{size} alt=''>")
    for f in findings:
        src = _data_url(f.get("contour_png"))
        if src and _positive(f):
            layers.append(f"<img class='layer contour' data-finding='{_esc(f['id'])}' src='{_esc(src)}'{size} "
                          f"alt='' title='{_esc(f.get('label') or '')}'>")
    return f"<div id='viewer'{style}>" + "".join(layers) + "</div>"


def _legend_html(findings: Sequence[Mapping]) -> str:
    items = []
    for f in findings:
        if _abstained(f):
            continue  # listed apart (_not_localised_html)
        flags = "".join(f"<span class='flag'>{k}</span>" for k in ("negated", "uncertain") if f.get(k))
        if f.get("cue"):
            flags += f"<span class='flag'>cue: {_esc(f['cue'])}</span>"
        metrics = f.get("metrics") or {}
        mtxt = ", ".join(f"{_esc(k)} {_esc(_fmt(v))}" for k, v in metrics.items())
        pos = _positive(f)
        attrs = " tabindex='0' role='button'" if pos else ""
        cls = "legend-item" + ("" if pos else " negated")
        toggle = ""
        if pos and (f.get("contour_png") or f.get("mask_png")):
            toggle = (f"<input type='checkbox' class='toggle' data-toggle='{_esc(f['id'])}' checked "
                      f"aria-label='show the outline of {_esc(f.get('label') or f['id'])}' title='show / hide its outline'>")
        items.append(f"<li class='{cls}' data-finding='{_esc(f['id'])}'{attrs} style='{_style(f)}' title='{_esc(_title(f))}'>"
                     f"{toggle}<span class='swatch'></span><span class='label'>{_esc(f.get('label') or '')}</span>"
                     f"<span class='cat'>({_esc(f.get('category') or '')})</span>{flags}{_confidence_html(f)}"
                     + (f"<span class='metrics'>{mtxt}</span>" if mtxt else "") + "</li>")
    return "<ul class='legend' id='legend'>" + "".join(items) + "</ul>"


def _footer_html(footer: Mapping | None) -> str:
    if not footer:
        return ""
    rows = "".join(f"<li><span class='k'>{_esc(k)}:</span> {_esc(_fmt(v))}</li>" for k, v in footer.items())
    return f"<footer><ul>{rows}</ul></footer>"


def _script_json(payload: Any) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' characters)."""
    return (json.dumps(payload, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _check(data: Mapping) -> list[dict]:
    findings = [dict(f) for f in data.get("findings") or ()]
    ids = [str(f.get("id", "")) for f in findings]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"every finding needs a distinct, non-empty id (got {ids})")
    for f, i in zip(findings, ids):
        f["id"] = i
    return findings


def render_report_page(data: Mapping[str, Any]) -> str:
    """One self-contained interactive HTML document (see the module docstring for ``data``)."""
    findings = _check(data)
    text = str(data.get("report") or "")
    title = str(data.get("title") or "groundkit report grounding")
    w = int(data.get("width") or 0)
    left = max(min(w, MAX_WIDTH), 280) if w > 0 else MAX_WIDTH
    payload = {"positive": {f["id"]: True for f in findings if _positive(f)},
               "heatmaps": {f["id"]: _data_url(f.get("heatmap_png")) for f in findings if _positive(f)}}
    n_pos = sum(1 for f in findings if _positive(f))
    n_gone = sum(1 for f in findings if _abstained(f))
    body = [
        f"<h1>{_esc(title)}</h1>",
        "<main class='layout'>",
        f"<section class='left' style='flex:0 1 {left}px'>",
        _viewer_html(data, findings),
        "<div class='controls'><label for='opacity'>heatmap opacity</label>"
        "<input type='range' id='opacity' min='0' max='1' step='0.05' value='0.6'>"
        "<output id='opacity-value' for='opacity'>0.60</output></div>",
        f"<h2>Findings ({n_pos} grounded, {len(findings) - n_pos - n_gone} negated"
        + (f", {n_gone} not localised" if n_gone else "") + ")</h2>",
        _legend_html(findings),
        _not_localised_html(findings, data.get("min_confidence")),
        "</section>",
        "<section class='right'><h2>Report</h2>",
        "<p class='hint' style='font-size:.85em;color:#555;margin:0 0 .5em'>Hover, click or focus (Tab, then Enter) "
        "a highlighted phrase to show its heatmap; Escape clears.</p>",
        f"<div class='report' id='report'>{_report_html(text, findings)}</div>",
        "</section></main>",
        _footer_html(data.get("footer")),
    ]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{_esc(title)}</title><link rel='icon' href='data:,'><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body)
            + f"\n<script type='application/json' id='gk-data'>{_script_json(payload)}</script>"
            + f"\n<script>{_JS}</script>\n</body></html>\n")
