"""The README and docs/*.md: the blocks marked runnable run, and every relative link points at something that exists.

A fenced block whose info string is ``bash runnable`` or ``python runnable`` is run (docs/index.md, "Runnable
blocks"): the blocks of one file in order, in one temporary folder holding the demo's sample image (``cxr.png``)
and sample report (``report.png``, ``report.txt``), with this environment's ``groundkit`` first on PATH. Bash
blocks run with ``bash -euo pipefail``; the python blocks of a file share one process (one namespace), like a
notebook. Everything runs in one child process per file, so a failing block cannot leave state in the test process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "groundkit" / "assets" / "demo"
DOC_FILES = sorted([*REPO.glob("*.md"), *(REPO / "docs").glob("*.md")])

# Pages other work in progress is writing. A link to one of them is tolerated while the file is missing; once it
# exists its links and headings are checked like any other. Remove a name when its page has landed.
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


def fenced_blocks(text: str):
    """(line number of the opening fence, info string, body) of every fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and set(lines[i].strip()) == {fence[0]}
                                      and len(lines[i].strip()) >= len(fence)):
            body.append(lines[i])
            i += 1
        yield start + 1, m["info"].strip(), "\n".join(body) + "\n"
        i += 1


def runnable_blocks(path: Path):
    out = []
    for line, info, body in fenced_blocks(path.read_text()):
        words = info.split()
        if "runnable" in words[1:]:
            assert words[0] in ("bash", "python"), f"{path.name}:{line}: runnable blocks are bash or python, not {words[0]!r}"
            out.append({"line": line, "lang": words[0], "code": body})
    return out


# Runs in a child process: executes the blocks of one file in order and reports which one failed.
_DRIVER = r"""
import json, os, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for b in blocks:
    print(f"=== block at line {b['line']} ({b['lang']})", flush=True)
    if b["lang"] == "bash":
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", b["code"]])
        if r.returncode:
            print(f"=== FAILED: block at line {b['line']} exited with {r.returncode}", flush=True)
            sys.exit(1)
    else:
        try:
            exec(compile(b["code"], f"<block at line {b['line']}>", "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print(f"=== FAILED: block at line {b['line']}", flush=True)
            sys.exit(1)
"""


def _with_runnable_blocks():
    return [p for p in DOC_FILES if runnable_blocks(p)]


@pytest.mark.parametrize("doc", _with_runnable_blocks(), ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks_run(doc, tmp_path):
    blocks = runnable_blocks(doc)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(DEMO / "sample.png", work / "cxr.png")
    shutil.copy(DEMO / "sample_report.png", work / "report.png")
    shutil.copy(DEMO / "sample_report.txt", work / "report.txt")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "driver.py").write_text(_DRIVER)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "GROUNDKIT_HOME": str(tmp_path / "home")})
    env.pop("GROUNDKIT_CHECKPOINTS", None)
    res = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{doc.name}: a runnable block failed\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
    assert res.stdout.count("=== block at line") == len(blocks)


def test_the_front_door_has_runnable_blocks():
    langs = {b["lang"] for b in runnable_blocks(REPO / "README.md")}
    assert langs == {"bash", "python"}, "the README's quick start and grounding examples are marked runnable"


# ------------------------------------------------------------------ links
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code spans (links there are examples, not links)."""
    lines, keep, fence = text.split("\n"), [], None
    for line in lines:
        m = FENCE.match(line)
        if fence is None and m:
            fence = m["fence"]
            keep.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
            keep.append("")
            continue
        keep.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(keep)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text()).split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m[1])
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path):
    for m in LINK.finditer(_prose(path.read_text())):
        target = m[1]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        yield target


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_existing_files(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        rel = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
        if not dest.exists():
            broken.append(f"{target}: {rel} does not exist")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {rel}")
    assert not broken, f"{doc.relative_to(REPO)}: broken links\n" + "\n".join(broken)


def test_the_docs_stand_alone():
    """The README and docs name no file outside the repository (the project's own design notes included)."""
    for doc in DOC_FILES:
        text = doc.read_text()
        for bad in ("../shared/", "SPEC.md", "DESIGN.md"):
            assert bad not in text, f"{doc.relative_to(REPO)} cites {bad}"


def test_the_link_checker_sees_links():
    """A guard for the checker itself: it finds the README's links, anchors and all."""
    targets = set(relative_links(REPO / "README.md"))
    assert "docs/index.md" in targets and "docs/demo_overlay.png" in targets
    assert "fast-recipes-not-the-same-maps" in anchors(REPO / "docs" / "recipes.md")
    assert slug("Benchmark: the papers' tables on MS-CXR") == "benchmark-the-papers-tables-on-ms-cxr"


def test_shipped_files_name_no_path_of_this_machine():
    """Assets and configs shipped in the package (calibrations, reference tables, checkpoint configs) say where
    their data came from as commands, never as a folder of the machine that made them."""
    machine = re.compile(r"(/tmp/|/root/|/home/|/work/|[A-Z]:\\)")
    bad = [str(p.relative_to(REPO)) for p in (REPO / "groundkit").rglob("*")
           if p.suffix in {".json", ".yaml", ".yml", ".csv", ".txt", ".cfg"} and machine.search(p.read_text(errors="replace"))]
    assert not bad, bad
