"""The report parser on hostile and pathological input (issue 24 item 3): every input, built here, parses
correctly or fails with a clear error, in bounded time; the size limit, lone surrogates, non-strings; spaCy
used only within its limits and only as an installed pipeline. Time bounds are generous sanity checks (the
real figures are in benchmarks/report_parser.py)."""
from __future__ import annotations

import functools
import random
import sys
import time
import types

import pytest

from groundkit.reports import parse_report
from groundkit.reports import sections as S
from groundkit.reports.parse import MAX_REPORT_CHARS
from groundkit.reports.scoring import report_labels

N = 100_000
SANITY_S = 10.0  # 100 kB of anything; ~0.2-0.5 s on one idle core


def parse(text: str):
    return parse_report(text, use_spacy=False)


def timed(text: str):
    t0 = time.process_time()
    rep = parse(text)
    return rep, time.process_time() - t0


@functools.cache
def _cases() -> dict[str, str]:
    rng = random.Random(0)
    return {
        "negated list, one sentence": ("No pneumothorax, pleural effusion or consolidation, " * (N // 50 + 1))[:N],
        "no effusion, no stop": ("no effusion " * (N // 12 + 1))[:N],
        "bangs": "!" * N,
        "a-dot": "a." * (N // 2),
        "a-dot-space": "a. " * (N // 3),
        "abbreviations": "approx. " * (N // 8),
        "e.g.": "e.g." * (N // 4),
        "binary junk": bytes(rng.randrange(256) for _ in range(N)).decode("latin-1"),
        "newlines": "\n" * N,
        "spaces then word": " " * N + "effusion",
        "headers": ("FINDINGS: " * (N // 10 + 1))[:N],
        "repeated finding": ("effusion " * (N // 9 + 1))[:N],
        "numbered list": ("1. Left effusion\n" * (N // 17 + 1))[:N],
        "one long line": ("left lower lobe opacity right base effusion " * (N // 44 + 1))[:N],
        # the rules of the check-set round: "?" cues, coordinated heads and sides, field lines, place phrases
        "question marks": ("? pneumonia ? " * (N // 14 + 1))[:N],
        "coordinated heads": ("pleural or pericardial effusion, " * (N // 33 + 1))[:N],
        "coordinated sides": ("small right and trace left " * (N // 27 + 1))[:N],
        "field lines": ("EFFUSION: small left HEART: " * (N // 28 + 1))[:N],
        "place phrases": ("opacity behind the heart " * (N // 25 + 1))[:N],
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_pathological_text_is_bounded(name):
    text = _cases()[name]
    rep, dt = timed(text)
    assert dt < SANITY_S, f"{name}: {dt:.1f} s"
    for m in rep.mentions:  # spans still index the text
        assert text[m.start:m.end] == m.text


def test_pathological_parses_are_correct():
    rep = parse(("No pneumothorax, pleural effusion or consolidation, " * 400)[:20_000])
    assert {f.status for f in rep.findings} == {"absent"}
    assert {f.category for f in rep.findings} == {"Pneumothorax", "Pleural Effusion", "Consolidation"}
    rep = parse("effusion " * 5000)
    assert len(rep.findings) == 1 and len(rep.findings[0].mentions) == 5000
    rep = parse("1. Left effusion\n" * 3000)
    assert [(f.category, f.side, len(f.mentions)) for f in rep.findings] == [("Pleural Effusion", "left", 3000)]
    assert parse("!" * 50_000).findings == []


def test_work_grows_linearly():
    """Ten times the text, at most ~20 times the time (a quadratic step would give 100)."""
    base = "No pneumothorax, pleural effusion or consolidation with left effusion; approx. a. "
    small, big = base * 250, base * 2500
    parse(small)
    t_small = min(timed(small)[1] for _ in range(3))
    t_big = min(timed(big)[1] for _ in range(2))
    assert t_big < 20 * max(t_small, 0.01), (t_small, t_big)


def test_size_limit_is_a_clear_error():
    text = "a" * (MAX_REPORT_CHARS + 1)
    t0 = time.process_time()
    with pytest.raises(ValueError, match="MAX_REPORT_CHARS"):
        parse(text)
    assert time.process_time() - t0 < 1


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        parse_report(b"No effusion.", use_spacy=False)  # type: ignore[arg-type]


def test_lone_surrogates_are_replaced_before_parsing():
    raw = b"Small left \xff effusion. No pneumothorax \xfe\xfd."
    text = raw.decode("utf-8", "surrogateescape")
    rep = parse(text)
    assert "\ufffd" in rep.text and len(rep.text) == len(text)
    assert not any("\udc80" <= c <= "\udcff" for c in rep.text)
    labels = report_labels(rep)
    assert labels["Pneumothorax"].status == "absent"
    rep.to_dict()["text"].encode("utf-8")  # writable as UTF-8


# ------------------------------------------------------------------------------------------------
# spaCy: within its limits, installed pipelines only (a fake spaCy stands in where none is installed)
# ------------------------------------------------------------------------------------------------
class _FakeDoc:
    def __init__(self, text: str):
        self.sents = []
        start = 0
        for i, c in enumerate(text):
            if c == "." and (i + 1 == len(text) or text[i + 1] == " "):
                self.sents.append(types.SimpleNamespace(start_char=start, end_char=i + 1))
                start = i + 1
        if start < len(text):
            self.sents.append(types.SimpleNamespace(start_char=start, end_char=len(text)))


class _FakeNLP:
    max_length = 1_000_000

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, text: str) -> _FakeDoc:
        assert len(text) <= self.max_length
        assert not any("\ud800" <= c <= "\udfff" for c in text)
        self.calls.append(text)
        return _FakeDoc(text)


def test_spacy_gets_bounded_clean_text(monkeypatch):
    nlp = _FakeNLP()
    monkeypatch.setattr(S, "spacy_pipeline", lambda: (nlp, "fake"))
    from groundkit.reports import parse as P

    monkeypatch.setattr(P, "spacy_pipeline", lambda: (nlp, "fake"))
    monkeypatch.setattr(P, "spacy_available", lambda: True)
    text = ("Small left effusion. No pneumothorax \udcff. " * 30_000)
    rep = parse_report(text, use_spacy=True)
    assert rep.sentence_backend == "spacy:fake"
    assert sum(len(c) for c in nlp.calls) <= S.SPACY_MAX_CHARS
    assert all(len(c) <= S.SPACY_CHUNK_CHARS for c in nlp.calls)
    assert len(rep.sentences) == 60_000  # the rest split by the rules
    labels = report_labels(rep)
    assert labels["Pleural Effusion"].side == "left" and labels["Pneumothorax"].status == "absent"


def test_spacy_model_env_accepts_installed_pipelines_only(monkeypatch, tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "evil_gk_module.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded: list[str] = []
    fake = types.ModuleType("spacy")
    fake.util = types.SimpleNamespace(get_installed_models=lambda: ["en_core_web_sm"], is_package=lambda n: True)
    fake.load = lambda name, **kw: loaded.append(name) or _FakeNLP()
    monkeypatch.setitem(sys.modules, "spacy", fake)
    S.spacy_pipeline.cache_clear()
    try:
        monkeypatch.setenv(S.SPACY_MODEL_ENV, "evil_gk_module")
        with pytest.raises(ValueError, match="not an installed spaCy pipeline"):
            S.spacy_pipeline()
        assert not S.spacy_available()
        assert not marker.exists() and "evil_gk_module" not in sys.modules and loaded == []
        S.spacy_pipeline.cache_clear()
        monkeypatch.setenv(S.SPACY_MODEL_ENV, "en_core_web_sm")
        nlp, name = S.spacy_pipeline()
        assert name == "en_core_web_sm" and loaded == ["en_core_web_sm"]
    finally:
        S.spacy_pipeline.cache_clear()
