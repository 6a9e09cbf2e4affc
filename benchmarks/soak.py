"""Soak test of the 2-rank benchmark: faults injected from outside, throughput and memory watched.

    python benchmarks/soak.py                          # 2000 images at 64 px (about 12 minutes on 2 cores)
    python benchmarks/soak.py --n 300 --json soak.json # shorter; figures also as JSON
    python benchmarks/soak.py --work /tmp/soak --no-uninterrupted-check

It writes a synthetic set (seed 4242) with two broken inputs (an image whose bytes are not a PNG, and an
image path that is a directory: unreadable even for root, unlike chmod 000), then runs

    torchrun --nproc-per-node 2 -m groundkit benchmark -c demo --dataset synthetic --data DIR \\
        --set steps=49:50 --set tokens=all --no-page --out OUT

with OMP_NUM_THREADS=2 (each rank must cap itself at 1 thread on 2 cores). At 25% of the rows it kills one
rank (SIGKILL; torchrun tears the job down) and re-launches the same command, which resumes; at 60% it
sends SIGINT to torchrun's process group (Ctrl-C) and re-launches; the last launch runs to the end. Every
--poll seconds it records each rank's RSS (/proc/PID/status) and the rows of each rows.rank{r}.jsonl
(hard-linked aside: the shards outlive rank 0's final merge, so rows written twice would show). It prints
samples/s per rank by 10% buckets, peak / final RSS and growth after a launch's first 100 samples (< 5%),
rows lost, duplicate rows, error rows (exactly the broken inputs) and, with --uninterrupted-check (default),
whether rows, summary.json and tables.md equal a plain 1-process run's. Importable: tests/test_scaleout.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ["benchmark", "-c", "demo", "--dataset", "synthetic", "--set", "steps=49:50", "--set", "tokens=all", "--no-page"]
FAULTS = ((0.25, "kill"), (0.60, "sigint"))
MEMORY_AFTER = 100  # samples of a launch before RSS counts as settled
MAX_GROWTH = 0.05


# ------------------------------------------------------------------ data and commands
def make_dataset(data: Path, n: int, seed: int = 4242, size: int = 64) -> tuple[list[str], dict[str, str]]:
    """The synthetic set with two broken inputs: (every sample id, {sample id of a broken input: what is broken})."""
    from groundkit.bench.datasets import load_dataset
    from groundkit.data.synthetic import generate

    generate(data, n=n, seed=seed, size=size)
    samples = list(load_dataset("synthetic", data=data))
    images = list(dict.fromkeys(str(s.image_path) for s in samples))
    corrupt, unreadable = Path(images[len(images) // 3]), Path(images[2 * len(images) // 3])
    corrupt.write_bytes(b"this is not a PNG file\n" * 8)
    unreadable.unlink()
    unreadable.mkdir()  # open() fails with IsADirectoryError, whoever runs it
    broken = {str(corrupt): "corrupt bytes", str(unreadable): "a directory"}
    return [s.sample_id for s in samples], {s.sample_id: broken[str(s.image_path)] for s in samples if str(s.image_path) in broken}


def torchrun_cmd(data: Path, out: Path, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "groundkit",
            *BENCH, "--data", str(data), "--out", str(out)]


def single_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "groundkit", *BENCH, "--data", str(data), "--out", str(out), "--no-progress"]


def job_env(omp_threads: int = 2, progress_seconds: float = 10) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(omp_threads), "GROUNDKIT_PROGRESS_SECONDS": str(progress_seconds),
            "PYTHONWARNINGS": "ignore"}


# ------------------------------------------------------------------ /proc
def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (torchrun's workers are its direct children)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def rank_pids(torchrun_pid: int) -> dict[int, int]:
    """{rank: pid} of torchrun's workers, read from their environment (RANK=)."""
    ranks = {}
    for pid in children(torchrun_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"RANK="):
                ranks[int(kv[5:])] = pid
    return ranks


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------------ watching
@dataclass
class Monitor:
    """Samples rows per rank shard and RSS per rank; keeps a hard link to every shard it sees."""

    out: Path
    keep: Path
    world: int = 2
    samples: list[dict] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str) -> None:
        self.events.append((self.now(), text))
        print(f"[soak {self.now():7.1f}s] {text}", flush=True)

    def _link_shards(self) -> None:
        self.keep.mkdir(parents=True, exist_ok=True)
        for r in range(self.world):
            f = self.out / f"rows.rank{r}.jsonl"
            try:
                ino = f.stat().st_ino
                os.link(f, self.keep / f"rows.rank{r}.{ino}.jsonl")
            except (FileNotFoundError, FileExistsError):
                pass

    def rows(self, rank: int) -> int:
        """Complete lines written by ``rank`` so far (all launches; read from the kept links)."""
        return sum(p.read_bytes().count(b"\n") for p in self.keep.glob(f"rows.rank{rank}.*.jsonl"))

    def sample(self, launch: int, pids: dict[int, int]) -> dict:
        self._link_shards()
        s = {"t": round(self.now(), 3), "launch": launch, "rows": {r: self.rows(r) for r in range(self.world)},
             "rss_kb": {r: rss_kb(p) for r, p in pids.items()}}
        s["total"] = sum(s["rows"].values())
        self.samples.append(s)
        return s


# ------------------------------------------------------------------ running
def _inject(kind: str, proc: subprocess.Popen, pids: dict[int, int], mon: Monitor, done: int, total: int) -> None:
    if kind == "kill":
        rank = max(pids)
        os.kill(pids[rank], signal.SIGKILL)
        mon.event(f"kill -9 rank {rank} (pid {pids[rank]}) at {done}/{total} rows")
    else:
        os.killpg(proc.pid, signal.SIGINT)
        mon.event(f"SIGINT to torchrun's process group (pgid {proc.pid}) at {done}/{total} rows")


def _stop(proc: subprocess.Popen, pids: dict[int, int]) -> None:
    """Last resort when a job does not end after a fault: kill it and its workers."""
    for pid in [proc.pid, *pids.values()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def launch(cmd: list[str], env: dict, mon: Monitor, launch_no: int, total: int, faults: list, log: Path,
           poll: float, grace: float = 120.0) -> tuple[int, str | None]:
    """One torchrun job, watched; injects the next fault once its share of rows is written.
    Returns (exit status, the fault injected or None)."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    mon.event(f"launch {launch_no}: torchrun pid {proc.pid} (log {log.name})")
    pids: dict[int, int] = {}
    injected, deadline = None, math.inf
    while proc.poll() is None:
        if len(pids) < mon.world:
            pids = rank_pids(proc.pid)
        s = mon.sample(launch_no, pids)
        if injected is None and faults and len(pids) == mon.world and s["total"] >= faults[0][0] * total:
            injected = faults.pop(0)[1]
            _inject(injected, proc, pids, mon, s["total"], total)
            deadline = time.monotonic() + grace
        if time.monotonic() > deadline:
            mon.event(f"launch {launch_no} did not end {grace:.0f}s after the fault: killed")
            _stop(proc, pids)
            break
        time.sleep(poll)
    mon.sample(launch_no, {})
    mon.event(f"launch {launch_no} ended: exit status {proc.returncode}")
    return proc.returncode, injected


def run_job(data: Path, out: Path, work: Path, total: int, faults=FAULTS, poll: float = 0.5,
            max_launches: int = 6) -> Monitor:
    """Launch until the job finishes, injecting ``faults`` [(share of rows, 'kill' | 'sigint')] on the way."""
    mon = Monitor(out, work / "shards")
    pending = list(faults)
    cmd, env = torchrun_cmd(data, out), job_env()
    for i in range(1, max_launches + 1):
        rc, injected = launch(cmd, env, mon, i, total, pending, work / f"launch{i}.log", poll)
        if rc == 0:
            return mon
        if injected is None:
            raise RuntimeError(f"launch {i} failed by itself (exit {rc}):\n" + (work / f"launch{i}.log").read_text()[-3000:])
    raise RuntimeError(f"no launch of {max_launches} finished")


def reference_run(data: Path, out: Path, log: Path) -> float:
    """The same benchmark in one uninterrupted process; returns its wall time."""
    t = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(single_cmd(data, out), env=job_env(omp_threads=1), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed (exit {proc.returncode}):\n" + log.read_text()[-3000:])
    return time.monotonic() - t


# ------------------------------------------------------------------ figures
def _at(samples: list[dict], rows: float) -> dict | None:
    """The first sample with at least ``rows`` rows written."""
    return next((s for s in samples if s["total"] >= rows), None)


def throughput(mon: Monitor, total: int) -> list[dict]:
    """Samples/s per rank while the job went from k*10% to (k+1)*10% of the rows (restarts included)."""
    table = []
    for k in range(10):
        a, b = _at(mon.samples, total * k / 10), _at(mon.samples, total * (k + 1) / 10)
        if a is None or b is None or b["t"] <= a["t"]:
            continue
        dt = b["t"] - a["t"]
        table.append({"bucket": f"{10 * k}-{10 * k + 10}%", "seconds": round(dt, 1),
                      "samples_per_s": {r: round((b["rows"][r] - a["rows"][r]) / dt, 2) for r in range(mon.world)},
                      "events": [e for t, e in mon.events if a["t"] <= t < b["t"] and not e.startswith("launch ")]})
    return table


def _segment_growth(seg: list[dict], rank: int) -> float | None:
    """RSS growth of one rank in one launch: peak while grounding vs RSS once MEMORY_AFTER samples were done."""
    start, last = seg[0]["rows"][rank], max(s["rows"][rank] for s in seg)
    base = next((s for s in seg if s["rows"][rank] - start >= MEMORY_AFTER), None)
    if base is None:
        return None
    end = next(i for i, s in enumerate(seg) if s["rows"][rank] == last)
    window = [s["rss_kb"][rank] for s in seg[seg.index(base):end + 1]]
    return max(window) / base["rss_kb"][rank] - 1


def memory(mon: Monitor) -> dict[int, dict]:
    """Per rank: peak and final RSS (MiB), and the worst growth after the first MEMORY_AFTER samples of a launch."""
    figures = {}
    for r in range(mon.world):
        seen = [s for s in mon.samples if s["rss_kb"].get(r)]
        launches = sorted({s["launch"] for s in seen})
        growths = [g for g in (_segment_growth([s for s in seen if s["launch"] == n], r) for n in launches) if g is not None]
        figures[r] = {"peak_mib": round(max(s["rss_kb"][r] for s in seen) / 1024, 1) if seen else None,
                      "final_mib": round(seen[-1]["rss_kb"][r] / 1024, 1) if seen else None,
                      "growth_after_100": round(max(growths), 4) if growths else None}
    return figures


def check_rows(out: Path, keep: Path, ids: list[str], broken: dict[str, str]) -> dict:
    """Rows lost, duplicate rows (in rows.jsonl and in every shard ever written), error rows vs the broken inputs."""
    from groundkit.bench.rows import read_rows, row_key

    rows = read_rows(out / "rows.jsonl")
    shard_rows = [r for p in sorted(keep.glob("*.jsonl")) for r in read_rows(p)]
    got = {r["sample_id"] for r in rows}
    errors = {r["sample_id"]: r["error"] for r in rows if r.get("error")}
    return {"rows": len(rows), "expected": len(ids), "lost": sorted(set(ids) - got), "unexpected": sorted(got - set(ids)),
            "duplicates": len(rows) - len({row_key(r) for r in rows}),
            "shard_rows": len(shard_rows), "shard_duplicates": len(shard_rows) - len({row_key(r) for r in shard_rows}),
            "errors": errors, "errors_match_broken": set(errors) == set(broken)}


def compare_runs(out: Path, ref: Path) -> dict:
    """Rows (metrics per sample_id), summary.json and tables.md of the soaked run vs the uninterrupted one."""
    from groundkit.bench.rows import read_rows

    def by_id(folder: Path) -> dict[str, dict]:
        return {r["sample_id"]: r for r in read_rows(folder / "rows.jsonl")}

    a, b = by_id(out), by_id(ref)
    metrics = json.loads((out / "run.json").read_text())["configs"][0]["metrics"]
    diff = 0.0
    for sid in set(a) & set(b):
        for m in metrics:
            x, y = a[sid].get(m), b[sid].get(m)
            if (x is None) != (y is None):
                diff = math.inf
            elif x is not None:
                diff = max(diff, abs(x - y))
    summary = [json.loads((d / "summary.json").read_text()) for d in (out, ref)]
    return {"same_samples": set(a) == set(b), "same_errors": {k for k in a if a[k].get("error")} == {k for k in b if b[k].get("error")},
            "max_metric_diff": diff, "summary_equal": summary[0] == summary[1],
            "macro": {k: v["macro"] for k, v in summary[0].items()}, "macro_uninterrupted": {k: v["macro"] for k, v in summary[1].items()},
            "tables_md_equal": (out / "tables.md").read_text() == (ref / "tables.md").read_text()}


def cap_lines(work: Path) -> list[str]:
    return [ln for p in sorted(work.glob("launch*.log")) for ln in p.read_text().splitlines() if "CPU threads" in ln]


# ------------------------------------------------------------------ the soak
def run_soak(work: Path, n: int = 2000, seed: int = 4242, size: int = 64, faults=FAULTS, poll: float = 0.5,
             uninterrupted: bool = True) -> dict:
    """Data, the faulted 2-rank job, the figures and (optionally) the uninterrupted comparison, as one dict."""
    data, out = work / "data", work / "out"
    t = time.monotonic()
    ids, broken = make_dataset(data, n, seed, size)
    print(f"[soak] {len(ids)} samples in {data} ({time.monotonic() - t:.0f}s); broken inputs: {broken}", flush=True)
    t = time.monotonic()
    mon = run_job(data, out, work, len(ids), faults, poll)
    fig = {"n_samples": len(ids), "broken": broken, "job_seconds": round(time.monotonic() - t, 1),
           "events": [(round(t, 1), e) for t, e in mon.events], "cap_lines": cap_lines(work),
           "throughput": throughput(mon, len(ids)), "memory": memory(mon), "rows": check_rows(out, mon.keep, ids, broken)}
    if uninterrupted:
        fig["uninterrupted_seconds"] = round(reference_run(data, work / "uninterrupted", work / "uninterrupted.log"), 1)
        fig["uninterrupted"] = compare_runs(out, work / "uninterrupted")
    (work / "samples.json").write_text(json.dumps(mon.samples))
    return fig


def _verdict(ok: bool) -> str:
    return "OK" if ok else "FAIL"


def print_report(fig: dict) -> bool:
    """The figures as text; returns whether every check passed."""
    rows, mem = fig["rows"], fig["memory"]
    ranks = sorted(mem)
    print(f"\n== soak: {fig['n_samples']} samples, 2 ranks, job {fig['job_seconds']}s (with restarts)")
    for t, e in fig["events"]:
        print(f"  {t:8.1f}s  {e}")
    print(f"thread cap lines ({len(fig['cap_lines'])}):", *sorted(set(fig["cap_lines"])), sep="\n  ")
    print("\nsamples/s per rank by share of rows done (restarts included):")
    print("| rows | seconds | " + " | ".join(f"rank {r}" for r in ranks) + " | events |")
    print("|---|---:|" + "---:|" * len(ranks) + "---|")
    for b in fig["throughput"]:
        print(f"| {b['bucket']} | {b['seconds']} | " + " | ".join(str(b["samples_per_s"][r]) for r in ranks)
              + f" | {'; '.join(b['events'])} |")
    checks = {}
    print("\nmemory (RSS):")
    for r in ranks:
        g = mem[r]["growth_after_100"]
        checks[f"memory rank {r}"] = g is None or g < MAX_GROWTH
        print(f"  rank {r}: peak {mem[r]['peak_mib']} MiB, final {mem[r]['final_mib']} MiB, growth after the first "
              f"{MEMORY_AFTER} samples of a launch: " + ("n/a (launch too short)" if g is None else f"{100 * g:.2f}%")
              + f" [{_verdict(checks[f'memory rank {r}'])}]")
    checks["rows lost"] = not rows["lost"] and not rows["unexpected"]
    checks["duplicates"] = rows["duplicates"] == 0 and rows["shard_duplicates"] == 0
    checks["error rows"] = rows["errors_match_broken"]
    print(f"\nrows: {rows['rows']} of {rows['expected']}; lost {len(rows['lost'])} [{_verdict(checks['rows lost'])}]")
    print(f"duplicate rows: {rows['duplicates']} in rows.jsonl, {rows['shard_duplicates']} in the {rows['shard_rows']} rows "
          f"the rank shards received [{_verdict(checks['duplicates'])}]")
    print(f"error rows: {len(rows['errors'])} [{_verdict(checks['error rows'])}]")
    for sid, err in sorted(rows["errors"].items()):
        print(f"  {sid} ({fig['broken'].get(sid, 'NOT INJECTED')}): {err}")
    if "uninterrupted" in fig:
        u = fig["uninterrupted"]
        checks["uninterrupted"] = u["same_samples"] and u["same_errors"] and u["max_metric_diff"] == 0 and u["summary_equal"]
        print(f"\nvs an uninterrupted 1-process run ({fig['uninterrupted_seconds']}s): same samples {u['same_samples']}, "
              f"same error rows {u['same_errors']}, max |metric diff| {u['max_metric_diff']:.3g}, summary.json equal "
              f"{u['summary_equal']}, tables.md equal {u['tables_md_equal']} [{_verdict(checks['uninterrupted'])}]")
        for label, macro in u["macro"].items():
            print(f"  {label} macro: " + ", ".join(f"{m} {v:.4f}" for m, v in macro.items()))
    ok = all(checks.values())
    print(f"\nsoak: {'PASSED' if ok else 'FAILED: ' + ', '.join(k for k, v in checks.items() if not v)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="synthetic images (one sample each; default 2000)")
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between samples of rows and RSS (default 0.5)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end)")
    ap.add_argument("--uninterrupted-check", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the plain 1-process benchmark and compare rows and tables (default on)")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="groundkit-soak-"))
    if args.work and (work / "out").exists():
        sys.exit(f"{work} holds an earlier soak: give another --work")
    work.mkdir(parents=True, exist_ok=True)
    try:
        fig = run_soak(work, args.n, args.seed, args.size, FAULTS, args.poll, args.uninterrupted_check)
        ok = print_report(fig)
        if args.json:
            args.json.write_text(json.dumps(fig, indent=1, default=str))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
