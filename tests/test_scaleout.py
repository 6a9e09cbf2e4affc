"""Scale-out under load: torchrun ranks on CPU cap their threads (unless --threads says otherwise), progress a
person can read in a log, and a shortened soak (kill -9 of one rank, resume) that loses and duplicates nothing."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from groundkit.bench.distributed import cap_threads
from groundkit.bench.progress import Progress, format_duration

REPO = Path(__file__).resolve().parents[1]
SETS = ["--set", "steps=49:50", "--set", "tokens=all"]


def _soak():
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ (a) thread cap
def _bench_cmd(data: Path, out: Path) -> list[str]:
    return ["-m", "groundkit", "benchmark", "-c", "demo", "--dataset", "synthetic", "--data", str(data), *SETS,
            "--no-page", "--no-progress", "--out", str(out)]


def test_torchrun_ranks_cap_their_threads(tmp_path):
    """2 ranks x OMP_NUM_THREADS=2 on this machine's cores: each rank keeps cores // 2 threads and says so in one line."""
    from groundkit.data.synthetic import generate

    generate(tmp_path / "syn", n=4, seed=0, size=64)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *_bench_cmd(tmp_path / "syn", out)]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cores = len(os.sched_getaffinity(0))
    cap = max(1, cores // 2)
    lines = [ln for ln in proc.stderr.splitlines() if "CPU threads" in ln]
    assert len(lines) == 2, proc.stderr
    for rank in (0, 1):
        want = (f"rank {rank}/2: CPU threads capped at 1 ({cores} cores / 2 local ranks; OMP_NUM_THREADS=2 ignored) - set "
                "--threads to override") if cap == 1 else f"rank {rank}/2: CPU threads 2, within the cap of {cap}"
        assert sum(ln.startswith(want) for ln in lines) == 1, (want, lines)
    session = json.loads((out / "run.json").read_text())["sessions"][-1]
    assert session["threads"] == min(2, cap) and session["world_size"] == 2 and session["rows"] == 4


def test_threads_option_is_used_as_given(tmp_path):
    """--threads N goes through the CLI to the process (here 1 against OMP_NUM_THREADS=2; under torchrun each rank
    then prints `CPU threads N (--threads N)` instead of capping: test_cap_threads_logic)."""
    from groundkit.data.synthetic import generate

    generate(tmp_path / "syn", n=2, seed=0, size=64)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, *_bench_cmd(tmp_path / "syn", tmp_path / "out"), "--threads", "1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CPU threads" not in proc.stderr  # one process: no cap line
    assert json.loads((tmp_path / "out" / "run.json").read_text())["sessions"][-1]["threads"] == 1


def test_cap_threads_logic(monkeypatch, capsys, keep_threads):
    """The cap: cores // LOCAL_WORLD_SIZE, only under a multi-rank CPU launch, never raising the count; --threads wins."""
    import groundkit.bench.distributed as d

    monkeypatch.setattr(d.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cap_threads("cpu", None) is None and capsys.readouterr().err == ""  # one process: untouched
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    torch.set_num_threads(6)
    assert cap_threads(None, None) == 2 and torch.get_num_threads() == 2
    assert capsys.readouterr().err == ("rank 3/4: CPU threads capped at 2 (8 cores / 4 local ranks; OMP_NUM_THREADS=6 ignored)"
                                       " - set --threads to override\n")
    torch.set_num_threads(1)
    assert cap_threads("cpu", None) == 1  # below the cap: kept
    assert "CPU threads 1, within the cap of 2 (8 cores / 4 local ranks" in capsys.readouterr().err
    assert cap_threads("cpu", 3) == 3 and torch.get_num_threads() == 3
    assert capsys.readouterr().err == "rank 3/4: CPU threads 3 (--threads 3)\n"
    with pytest.raises(ValueError, match="--threads"):
        cap_threads("cpu", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cap_threads("cuda:0", None) is None and torch.get_num_threads() == 3  # CUDA: nothing changes
    assert cap_threads("cpu", None) == 2  # CPU ranks on a GPU machine are capped all the same


# ------------------------------------------------------------------ (b) shortened soak
def test_soak_kill_one_rank_and_resume(tmp_path, capfd):
    """24 samples (2 broken inputs), kill -9 of rank 1 after a quarter of the rows, re-launch: nothing lost or
    written twice, the broken inputs are the error rows, and the rows equal an uninterrupted in-process run's."""
    from groundkit.bench.datasets import load_dataset
    from groundkit.bench.runner import run_benchmark

    soak = _soak()
    data, out = tmp_path / "data", tmp_path / "out"
    ids, broken = soak.make_dataset(data, n=24)
    assert len(ids) == 24 and len(broken) == 2
    mon = soak.run_job(data, out, tmp_path, len(ids), faults=[(0.25, "kill")], poll=0.1)
    assert [e for _, e in mon.events if e.startswith("kill -9 rank 1")], mon.events
    assert sum(e.startswith("launch ") and e.endswith("exit status 0") for _, e in mon.events) == 1
    rows = soak.check_rows(out, mon.keep, ids, broken)
    assert rows["lost"] == [] and rows["unexpected"] == [] and rows["duplicates"] == 0 and rows["shard_duplicates"] == 0
    assert set(rows["errors"]) == set(broken) and rows["shard_rows"] == 24
    caps = soak.cap_lines(tmp_path)
    assert len(caps) == 4 and all("CPU threads capped at 1" in c for c in caps), caps  # 2 ranks x 2 launches
    log = (tmp_path / "launch2.log").read_text()  # not a terminal: plain progress lines, one per rank at the end
    for rank in (0, 1):
        assert re.search(rf"^\[rank {rank}/2\] (\d+)/\1 samples, \d+\.\d\d samples/s, done in \w+, \d+ failed$", log, re.M), log
    capfd.readouterr()
    ref = run_benchmark(["demo"], None, {"steps": "49:50", "tokens": "all"}, load_dataset("synthetic", data=data),
                        tmp_path / "ref", tables=False, page=False, progress=False)
    assert capfd.readouterr() == ("", "")  # progress=False: silent
    got = {r["sample_id"]: r for r in json.loads("[" + ",".join((out / "rows.jsonl").read_text().splitlines()) + "]")}
    assert set(got) == {r["sample_id"] for r in ref.rows}
    for r in ref.rows:
        mine = got[r["sample_id"]]
        assert bool(mine["error"]) == bool(r["error"])
        for m in ("miou_fgbg", "cnr", "top1", "auroc"):
            assert mine[m] == pytest.approx(r[m], rel=1e-6, abs=1e-9) if r[m] is not None else mine[m] is None, (r["sample_id"], m)


# ------------------------------------------------------------------ (c) progress in a log
class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_lines_when_not_a_terminal():
    clock, stream = _Clock(), io.StringIO()
    p = Progress(10, rank=1, world=2, interval=30, stream=stream, clock=clock)
    clock.t += 5  # loading the model: not counted in samples/s
    p.begin()
    for i in range(10):
        clock.t += 8
        p.update(1, failed=int(i == 3))
    p.close()
    p.close()
    assert stream.getvalue().splitlines() == [
        "[rank 1/2] 4/10 samples, 0.12 samples/s, ETA 48s, 1 failed",  # t = 32 s after begin
        "[rank 1/2] 8/10 samples, 0.12 samples/s, ETA 16s, 1 failed",  # t = 64 s
        "[rank 1/2] 10/10 samples, 0.12 samples/s, done in 1m25s, 1 failed",
    ]


def test_progress_interval_from_env_and_stopped(monkeypatch):
    monkeypatch.setenv("GROUNDKIT_PROGRESS_SECONDS", "0")
    clock, stream = _Clock(), io.StringIO()
    p = Progress(3, stream=stream, clock=clock)
    p.begin()
    clock.t += 2
    p.update()
    p.close()  # e.g. Ctrl-C after one sample
    assert stream.getvalue().splitlines() == ["[benchmark] 1/3 samples, 0.50 samples/s, ETA 4s, 0 failed",
                                              "[benchmark] 1/3 samples, 0.50 samples/s, stopped after 2s, 0 failed"]
    assert [format_duration(s) for s in (0.4, 59, 164, 3725)] == ["0s", "59s", "2m44s", "1h02m"]


def test_progress_on_a_terminal_is_a_tqdm_bar_and_off_is_silent():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with Progress(4, rank=1, world=2, stream=tty) as p:
        p.begin()
        p.update(2, failed=1)
    text = tty.getvalue()
    assert "benchmark [rank 1/2]" in text and "sample/s" in text and "failed=1" in text and "\r" in text
    quiet = Tty()
    with Progress(4, enabled=False, stream=quiet) as p:
        p.update(4)
    silent = io.StringIO()
    with Progress(4, enabled=False, stream=silent) as p:
        p.update(4)
    assert quiet.getvalue() == silent.getvalue() == ""
