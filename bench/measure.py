"""What `make bench` measures and how: wrk runs, /proc readings, the in-process floor, the machine.

Every number in docs/benchmarks.md comes from here, so the parsing is strict: a wrk output
that lacks a line we rely on is an error, never a silent zero. CPU time and RSS are read
straight from /proc (no psutil) for the server's whole process tree, because every design we
compare spreads its work over several processes (gateway, replicas, proxies, workers).
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0}


class MeasureError(RuntimeError):
    """A measurement could not be taken (wrk missing or failing, unparsable output)."""


# --- wrk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles and every kind of failure it counted."""

    connections: int
    requests: int
    seconds: float
    rps: float
    p50_us: float
    p99_us: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def error_text(self) -> str:
        """'' when clean, else e.g. '12 non-2xx, 3 timeout'."""
        parts = [f"{self.non_2xx} non-2xx"] if self.non_2xx else []
        parts += [f"{count} {kind}" for kind, count in self.socket_errors.items() if count]
        return ", ".join(parts)


def _duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise MeasureError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_US[match.group(2)]


def parse_wrk(output: str, connections: int) -> WrkResult:
    """Parse `wrk --latency` text output (wrk 4.x)."""

    def need(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise MeasureError(f"wrk output lacks /{pattern}/:\n{output}")
        return match

    total = need(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = {}
    if sockets:
        socket_errors = {
            kind: int(sockets.group(index + 1))
            for index, kind in enumerate(("connect", "read", "write", "timeout"))
        }
    return WrkResult(
        connections=connections,
        requests=int(total.group(1)),
        seconds=_duration_us(total.group(2) + total.group(3)) / 1e6,
        rps=float(need(r"^Requests/sec:\s*([\d.]+)").group(1)),
        p50_us=_duration_us(need(r"^\s*50%\s+(\S+)").group(1)),
        p99_us=_duration_us(need(r"^\s*99%\s+(\S+)").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package first when it is missing (we run as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk not found; installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL, env=env)
    found = shutil.which("wrk")
    if not found:
        raise MeasureError("wrk is missing and `apt-get install -y wrk` did not install it")
    return found


def run_wrk(url: str, connections: int, seconds: float, body: Path, script: Path) -> WrkResult:
    """One `wrk -t1 -cN` run POSTing `body`; one thread leaves the other core to the server."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
        "--latency", "-s", str(script), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": str(body)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60)
    except subprocess.TimeoutExpired as exc:
        raise MeasureError(f"wrk did not finish: {' '.join(command)}") from exc
    if done.returncode != 0:
        raise MeasureError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout, connections)


# --- /proc ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that the bench uses."""

    pid: int
    state: str  # "Z" for a zombie: dead, not yet reaped
    ppid: int
    sid: int
    cpu_seconds: float  # utime + stime
    start_ticks: int  # tells a pid apart from a later process that reuses it


def read_stat(pid: int) -> ProcStat | None:
    """None when the process is gone (or was never there)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        sid=int(fields[3]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        start_ticks=int(fields[19]),
    )


def all_processes() -> list[ProcStat]:
    stats = (read_stat(int(entry)) for entry in os.listdir("/proc") if entry.isdigit())
    return [stat for stat in stats if stat is not None]


def process_tree(root: int) -> list[ProcStat]:
    """`root` and all its descendants (walking ppid links), root first."""
    processes = all_processes()
    children: dict[int, list[ProcStat]] = {}
    by_pid = {stat.pid: stat for stat in processes}
    for stat in processes:
        children.setdefault(stat.ppid, []).append(stat)
    if root not in by_pid:
        return []
    tree, frontier = [by_pid[root]], [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            tree.append(child)
            frontier.append(child.pid)
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB; 0 when it is gone or is a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def tree_rss_kib(root: int) -> int:
    """Sum of VmRSS over `root` and its descendants (shared pages count once per process)."""
    return sum(rss_kib(stat.pid) for stat in process_tree(root))


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by each process of a tree, keyed by (pid, start time)."""

    root: int
    seconds: dict[tuple[int, int], float]

    @classmethod
    def take(cls, root: int) -> CpuSnapshot:
        return cls(root, {(s.pid, s.start_ticks): s.cpu_seconds for s in process_tree(root)})


@dataclass(frozen=True)
class CpuSplit:
    """CPU microseconds per request: the root process, and its descendants together."""

    root_us: float
    children_us: float

    @property
    def total_us(self) -> float:
        return self.root_us + self.children_us


def cpu_per_request(before: CpuSnapshot, after: CpuSnapshot, requests: int) -> CpuSplit:
    """Split the tree's CPU time spent between two snapshots over `requests` requests."""
    root_us = children_us = 0.0
    for key, seconds in after.seconds.items():
        spent = (seconds - before.seconds.get(key, 0.0)) * 1e6 / max(requests, 1)
        if key[0] == after.root:
            root_us += spent
        else:
            children_us += spent
    return CpuSplit(root_us, children_us)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the finished wrk runs)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass(frozen=True)
class Window:
    """CPU readings around one wrk run: the server's tree, the whole machine, and ourselves.

    What the machine spent beyond the server, wrk and the bench itself is 'other load': another
    user's work on this box. The report shows it, because it skews a comparison silently.
    """

    tree: CpuSnapshot
    machine_s: float
    own_s: float
    started: float

    @classmethod
    def open(cls, root: int) -> Window:
        return cls(CpuSnapshot.take(root), machine_busy_seconds(), own_cpu_seconds(), time.monotonic())

    def close(self, requests: int) -> tuple[CpuSplit, float]:
        """The tree's CPU per request, and the other load in cores (0.5 = half a core)."""
        after = CpuSnapshot.take(self.tree.root)
        wall = time.monotonic() - self.started
        split = cpu_per_request(self.tree, after, requests)
        tree_s = split.total_us * max(requests, 1) / 1e6
        other_s = (machine_busy_seconds() - self.machine_s) - tree_s - (own_cpu_seconds() - self.own_s)
        return split, max(other_s, 0.0) / wall


def other_load(seconds: float) -> float:
    """Cores kept busy by other processes over the next `seconds` (before a run starts)."""
    machine, own, start = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    spent = (machine_busy_seconds() - machine) - (own_cpu_seconds() - own)
    return max(spent, 0.0) / (time.monotonic() - start)


# --- the floor: onnxruntime alone ----------------------------------------------------------


@dataclass(frozen=True)
class FloorResult:
    calls: int
    seconds: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def us_per_call(self) -> float:
        return self.seconds * 1e6 / self.calls


def session_run_floor(model: Path, seconds: float) -> FloorResult:
    """`session.run` on one prepared [1, 4] input in a loop, in this process: no HTTP, no JSON.

    The session is set up exactly as B0's (one intra-op and one inter-op thread, CPU provider),
    so the gap between this and any server is what serving costs.
    """
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: np.array([[5.2, 3.6, 1.4, 0.3]], dtype=np.float32)}
    for _ in range(200):
        session.run(None, feeds)
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            session.run(None, feeds)
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return FloorResult(calls, now - start)


# --- the machine ---------------------------------------------------------------------------

BENCH_PACKAGES = ("inferd", "onnxruntime", "numpy", "orjson", "uvloop", "httptools", "uvicorn", "starlette")


def machine_info() -> dict[str, str]:
    """CPU, cores, memory, kernel, Python and the versions that the numbers depend on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    info = {
        "CPU": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": str(len(os.sched_getaffinity(0))),
        "RAM": f"{int(mem_kib.group(1)) / 1024 / 1024:.1f} GiB" if mem_kib else "unknown",
        "kernel": platform.release(),
        "Python": sys.version.split()[0],
        "wrk": wrk.split(" [")[0] if wrk else "unknown",
    }
    for package in BENCH_PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info
