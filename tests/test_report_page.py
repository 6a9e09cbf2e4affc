"""The interactive report-grounding page (groundkit.viz.report_page) and the benchmark report, checked in
a real headless Chromium (tests/browser.py) from file:// -- and, without a browser, the page's HTML."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from browser import chrome, console_errors, horizontal_overflow
from PIL import Image

from groundkit.viz.report_page import render_report_page

W, H = 96, 80
REPORT = ("FINDINGS: There is a small left apical pneumothorax <b>new</b> & stable.\n"
          "Patchy right basal opacity may represent consolidation. No pleural effusion.\n"
          "IMPRESSION: 1 < 2 > 0 & pneumothorax.")
COLORS = {"f0": "#e6194b", "f1": "#3cb44b", "f2": "#4363d8"}


def _b64png(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _heatmap(rng) -> str:
    a = np.zeros((H, W, 4), np.uint8)
    v = rng.random((H, W))
    a[..., 0], a[..., 1], a[..., 2] = 255, (v * 200).astype(np.uint8), 0
    a[..., 3] = np.where(v > 0.5, (v * 255).astype(np.uint8), 0)
    return _b64png(a)


def _contour(color: str, box) -> str:
    a = np.zeros((H, W, 4), np.uint8)
    x0, y0, x1, y1 = box
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    for ys, xs in ((slice(y0, y0 + 1), slice(x0, x1)), (slice(y1 - 1, y1), slice(x0, x1)),
                   (slice(y0, y1), slice(x0, x0 + 1)), (slice(y0, y1), slice(x1 - 1, x1))):
        a[ys, xs, :3], a[ys, xs, 3] = rgb, 255
    return _b64png(a)


def _span(phrase: str, nth: int = 0) -> dict:
    starts = [m.start() for m in re.finditer(re.escape(phrase), REPORT)]
    return {"start": starts[nth], "end": starts[nth] + len(phrase)}


def make_data() -> dict:
    rng = np.random.default_rng(3)
    img = (rng.random((H, W)) * 255).astype(np.uint8)
    pos = dict(negated=False, cue=None)
    findings = [
        {"id": "f0", "label": "small left apical pneumothorax", "category": "Pneumothorax", "uncertain": False,
         "mentions": [_span("small left apical pneumothorax"), _span("pneumothorax", 1)],
         "heatmap_png": _heatmap(rng), "contour_png": _contour(COLORS["f0"], (50, 5, 90, 30)),
         "metrics": {"cnr": 1.234, "miou": 0.41}, **pos},
        {"id": "f1", "label": "right basal opacity", "category": "Consolidation", "uncertain": True, "cue": "may represent",
         "mentions": [_span("Patchy right basal opacity")], "heatmap_png": _heatmap(rng),
         "contour_png": _contour(COLORS["f1"], (5, 40, 45, 75)), "metrics": None, "negated": False},
        {"id": "f2", "label": "pleural effusion", "category": "Pleural Effusion", "negated": True, "uncertain": False,
         "cue": "no", "mentions": [_span("pleural effusion")], "heatmap_png": None, "contour_png": None, "metrics": None},
    ]
    for f in findings:
        f["color"] = COLORS[f["id"]]
    return {"title": "groundkit report grounding", "image_png": _b64png(img), "width": W, "height": H,
            "report": REPORT, "findings": findings,
            "footer": {"checkpoint": "demo <tiny>", "recipe": "demo-default", "seconds": 1.25, "unet_calls": 2.0,
                       "groundkit": "0.1.0"}}


DATA = make_data()
HEATMAPS = {f["id"]: "data:image/png;base64," + f["heatmap_png"] for f in DATA["findings"] if f["heatmap_png"]}
POSITIVE = [f["id"] for f in DATA["findings"] if not f["negated"]]


# ------------------------------------------------------------------------------------------------
# without a browser
# ------------------------------------------------------------------------------------------------
class _Collect(HTMLParser):
    """The text of #report and the (data-finding, text) of its mention spans."""

    def __init__(self):
        super().__init__()
        self.depth, self.text, self.mentions, self._m = 0, [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "report" or self.depth:
            self.depth += 1
        if self.depth and tag == "span" and "mention" in (a.get("class") or "").split():
            assert a.get("tabindex") == "0"
            self._m = [a.get("data-finding"), ""]
            self.mentions.append(self._m)

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
            self._m = None

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)
            if self._m is not None:
                self._m[1] += data


def test_escaping_and_mentions():
    page = render_report_page(DATA)
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;new&lt;/b&gt; &amp; stable" in page and "<b>new" not in page
    assert "1 &lt; 2 &gt; 0 &amp;" in page and "demo &lt;tiny&gt;" in page
    p = _Collect()
    p.feed(page)
    assert "".join(p.text) == REPORT  # the text round-trips exactly
    want = sorted((f["id"], REPORT[m["start"]:m["end"]]) for f in DATA["findings"] for m in f["mentions"])
    assert sorted(tuple(m) for m in p.mentions) == want
    assert "negated by &#x27;no&#x27;: not grounded" in page


def test_self_contained():
    page = render_report_page(DATA)
    assert not re.search(r"https?://", page), "no network reference of any kind"
    refs = re.findall(r"""\b(?:src|href)\s*=\s*['"]([^'"]*)""", page)
    assert refs and all(r.startswith("data:") for r in refs), refs
    assert not re.search(r"<(?:link[^>]*stylesheet|script[^>]*\bsrc\b|iframe)", page)
    for f in DATA["findings"]:
        if f["contour_png"]:
            assert f["contour_png"] in page
    assert "</script" not in page.split("id='gk-data'>", 1)[1].split("</script>", 1)[0]


def test_bad_input_is_contained():
    d = make_data()
    d["findings"][0]["color"] = "red;background:url(x)"  # not a hex colour: grey, no CSS injection
    d["findings"][1]["mentions"].append({"start": 30, "end": 40})  # overlaps f0's first mention: dropped
    page = render_report_page(d)
    assert "url(x)" not in page and "--c:#888888" in page
    with pytest.raises(ValueError):
        render_report_page({**d, "findings": [d["findings"][0], d["findings"][0]]})


# ------------------------------------------------------------------------------------------------
# in headless Chromium
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver():
    d = chrome()
    yield d
    d.quit()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    p = tmp_path_factory.mktemp("report_page") / "page.html"
    p.write_text(render_report_page(DATA), encoding="utf-8")
    return p.as_uri()


@pytest.fixture
def page(driver, page_url):
    driver.get(page_url)
    driver.execute_script("return document.readyState")
    console_errors(driver)  # drain
    return driver


def _state(d) -> tuple[str | None, str | None]:
    return tuple(d.execute_script("var h = document.getElementById('heatmap');"
                            "return [document.getElementById('viewer').getAttribute('data-active'),"
                            " h.hidden ? null : h.getAttribute('src')];"))


def _mention(d, fid):
    from selenium.webdriver.common.by import By

    return d.find_element(By.CSS_SELECTOR, f"#report .mention[data-finding='{fid}']")


def test_page_loads_offline_without_errors(page):
    d = page
    assert d.current_url.startswith("file://")
    imgs = d.execute_script("return Array.from(document.images).filter(i => i.getAttribute('src'))"
                            ".map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(imgs) == 3 and all(c and w == W and h == H for c, w, h in imgs), imgs
    assert d.execute_script("return document.getElementById('report').textContent") == REPORT
    assert d.execute_script("return performance.getEntriesByType('resource').filter("
                            "e => !/^(data|file):/.test(e.name)).map(e => e.name)") == []
    assert horizontal_overflow(d) == 0
    assert _state(d) == (None, None)
    assert console_errors(d) == []


def test_click_mentions_and_legend(page):
    from selenium.webdriver.common.by import By

    d = page
    for fid in POSITIVE:
        for el in d.find_elements(By.CSS_SELECTOR, f"#report .mention[data-finding='{fid}']"):
            el.click()
            assert _state(d) == (fid, HEATMAPS[fid])
            assert "active" in el.get_attribute("class").split()
            assert d.execute_script("return document.getElementById('heatmap').naturalWidth") == W
    for fid in reversed(POSITIVE):
        d.find_element(By.CSS_SELECTOR, f".legend-item[data-finding='{fid}']").click()
        assert _state(d) == (fid, HEATMAPS[fid])
        assert "active" in _mention(d, fid).get_attribute("class").split()
    assert horizontal_overflow(d) == 0
    assert console_errors(d) == []


def test_keyboard_activates(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d = page
    for fid, key in zip(POSITIVE, (Keys.ENTER, Keys.SPACE)):
        d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
        for _ in range(30):  # Tab through the page until the mention has the focus
            ActionChains(d).send_keys(Keys.TAB).perform()
            if d.execute_script("var a = document.activeElement; return a.classList.contains('mention') && "
                                "a.getAttribute('data-finding') === arguments[0];", fid):
                break
        else:
            pytest.fail(f"Tab never reached the mention of {fid}")
        assert _state(d)[0] != fid  # the focus alone pins nothing
        ActionChains(d).send_keys(key).perform()
        assert _state(d) == (fid, HEATMAPS[fid])
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    assert _state(d) == (None, None)
    assert console_errors(d) == []


def test_hover_previews(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = page
    for fid in POSITIVE:
        ActionChains(d).move_to_element(_mention(d, fid)).perform()
        assert _state(d) == (fid, HEATMAPS[fid])
    ActionChains(d).move_to_element(d.find_element(By.TAG_NAME, "h1")).perform()
    assert _state(d) == (None, None)  # a preview only: nothing was pinned
    _mention(d, POSITIVE[0]).click()
    ActionChains(d).move_to_element(_mention(d, POSITIVE[1])).perform()
    assert _state(d)[0] == POSITIVE[1]
    ActionChains(d).move_to_element(d.find_element(By.TAG_NAME, "h1")).perform()
    assert _state(d)[0] == POSITIVE[0]  # back to the pinned one
    assert console_errors(d) == []


def test_negated_mention(page):
    d = page
    el = _mention(d, "f2")
    style = d.execute_script("var s = getComputedStyle(arguments[0]); return [s.textDecorationLine, s.textDecorationStyle];", el)
    assert "line-through" in style[0]
    assert "'no'" in el.get_attribute("title") and "not grounded" in el.get_attribute("title")
    el.click()
    assert _state(d) == (None, None)
    unc = _mention(d, "f1")
    assert d.execute_script("return getComputedStyle(arguments[0]).textDecorationStyle", unc) == "dashed"
    assert "may represent" in unc.get_attribute("title")
    d.execute_script("arguments[0].focus()", el)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(d).send_keys(Keys.ENTER).perform()
    assert _state(d) == (None, None)
    assert console_errors(d) == []


def test_opacity_slider(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = page
    _mention(d, POSITIVE[0]).click()
    op = lambda: float(d.execute_script("return getComputedStyle(document.getElementById('heatmap')).opacity"))
    assert op() == pytest.approx(0.6)
    slider = d.find_element(By.ID, "opacity")
    slider.send_keys(Keys.HOME)
    assert op() == 0
    slider.send_keys(Keys.END)
    assert op() == 1
    slider.send_keys(Keys.LEFT, Keys.LEFT)
    assert op() == pytest.approx(0.9)
    assert d.find_element(By.ID, "opacity-value").text == "0.90"
    assert _state(d) == (POSITIVE[0], HEATMAPS[POSITIVE[0]])
    assert console_errors(d) == []


def test_benchmark_page(driver, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "groundkit", *a], env=env, capture_output=True, text=True,
                                    timeout=300)
    r = run("demo-data", "--out", str(tmp_path / "data"), "--n", "8", "--seed", "5", "--size", "64")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = run("benchmark", "-c", "demo", "--dataset", "synthetic", "--data", str(tmp_path / "data"), "--set", "steps=49:50",
            "--set", "tokens=all", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    driver.get((out / "benchmark.html").as_uri())
    imgs = driver.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
    assert imgs and all(c and w > 0 for _, c, w in imgs), imgs
    assert horizontal_overflow(driver) == 0
    assert console_errors(driver) == []


# ------------------------------------------------------------------------------------------------
# the bundled sample report, grounded by the demo model (contrast between findings on, the default)
# ------------------------------------------------------------------------------------------------
def test_outline_toggles_and_tints_in_the_html():
    d = make_data()
    d["findings"][0]["mask_png"] = _contour(COLORS["f0"], (50, 5, 90, 30))
    page = render_report_page(d)
    assert page.count("class='toggle'") == 2  # one per grounded finding, none for the negated one
    assert "data-toggle='f2'" not in page and page.count("class='layer fill'") == 1
    assert page.index("class='layer fill'") < page.index("class='layer contour'")  # outlines stay on top


def test_sample_report_findings_get_different_regions_in_the_browser(driver, tmp_path):
    import groundkit as gk

    demo_dir = os.path.join(os.path.dirname(gk.__file__), "assets", "demo")
    model = gk.load("demo", device="cpu")
    text = open(os.path.join(demo_dir, "sample_report.txt"), encoding="utf-8").read()
    rg = model.ground_report(os.path.join(demo_dir, "sample_report.png"), text)
    assert rg.info["contrast"]["applied"]
    out = rg.save(tmp_path / "rep")
    assert max(Image.open(out / "overlay.png").size) >= 512  # readable overlay
    driver.get((out / "report.html").as_uri())
    ids = driver.execute_script("return Array.from(document.querySelectorAll('#viewer .fill')).map(e => e.getAttribute('data-finding'));")
    assert len(ids) == 2
    # each finding's mask as the page shows it, read back from the page's own images
    js = """
      var out = {};
      document.querySelectorAll('#viewer .fill').forEach(function (img) {
        var c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        var ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        var d = ctx.getImageData(0, 0, c.width, c.height).data, m = [];
        for (var i = 3; i < d.length; i += 4) { m.push(d[i] > 0 ? 1 : 0); }
        out[img.getAttribute('data-finding')] = m;
      });
      return out;"""
    masks = driver.execute_script(js)
    a, b = (np.array(masks[i], bool) for i in ids)
    assert a.sum() > 0 and b.sum() > 0
    iou = (a & b).sum() / (a | b).sum()
    assert iou <= 0.3, iou
    # outlines: one per finding, each in its own colour, drawn at >= 512 px; the legend's toggles hide/show them
    sizes = driver.execute_script("return Array.from(document.querySelectorAll('#viewer .contour')).map(i => [i.naturalWidth, i.naturalHeight]);")
    assert len(sizes) == 2 and all(max(s) >= 512 for s in sizes)
    visible = lambda fid: driver.execute_script(
        "var e = document.querySelector(\"#viewer .contour[data-finding='\" + arguments[0] + \"']\");"
        "return getComputedStyle(e).display !== 'none';", fid)
    box = driver.find_element("css selector", f"input.toggle[data-toggle='{ids[0]}']")
    assert visible(ids[0]) and visible(ids[1])
    box.click()
    assert not visible(ids[0]) and visible(ids[1])
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(driver.find_element("tag name", "h1")).perform()  # end the hover preview
    assert driver.execute_script("return document.getElementById('viewer').getAttribute('data-active')") is None  # toggling pins nothing
    box.click()
    assert visible(ids[0])
    # the active finding's region is tinted; the other's is not
    driver.find_element("css selector", f".legend-item[data-finding='{ids[1]}']").click()
    shown = driver.execute_script("return Array.from(document.querySelectorAll('#viewer .fill'))"
                                  ".filter(e => getComputedStyle(e).display !== 'none').map(e => e.getAttribute('data-finding'));")
    assert shown == [ids[1]]
    assert console_errors(driver) == [] and horizontal_overflow(driver) <= 0
