"""Turns one bench run into docs/benchmarks.md, docs/benchmarks.png and the table on stdout.

The report states everything a reader needs to trust or redo the numbers: the machine, the
versions, the date, the command, how rounds were reduced (best requests/s of the rounds, with
that round's latencies), and every error that wrk counted. Ratios are taken against B0 from
the same run only, since absolute numbers move from one machine (or minute) to the next.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import CpuSplit, FloorResult, WrkResult

# The bars of shared/DESIGN.md section 4, checked against this run's ratios.
BAR_RPS_VS_B0 = 1.5
BAR_P50_VS_B0 = 1.0
BAR_RPS_VS_PEER = 5.0
OTHER_LOAD_WARN = 0.2  # cores of someone else's work beside a run before the report flags it


@dataclass(frozen=True)
class Measurement:
    round: int
    wrk: WrkResult
    cpu: CpuSplit | None = None
    rss_kib: int | None = None  # only at the largest connection count
    other_load: float = 0.0  # cores busy with work that was neither the server, wrk nor the bench


@dataclass
class Row:
    """One line of each table: a server and the route it was driven on."""

    name: str
    kind: str  # "b0", "noop", "inferd", "v2", "peer"
    config: str
    points: dict[int, list[Measurement]] = field(default_factory=dict)
    note: str | None = None  # why it has no numbers
    failures: list[str] = field(default_factory=list)  # attempts that failed, for the report

    def best(self, connections: int) -> Measurement | None:
        rounds = self.points.get(connections, [])
        return max(rounds, key=lambda m: m.wrk.rps) if rounds else None

    def errors(self, connections: int) -> str:
        """Errors summed over all rounds at this connection count ('' when clean)."""
        rounds = self.points.get(connections, [])
        non_2xx = sum(m.wrk.non_2xx for m in rounds)
        sockets = sum(sum(m.wrk.socket_errors.values()) for m in rounds)
        total = sum(m.wrk.requests for m in rounds)
        parts = [f"{non_2xx} non-2xx" if non_2xx else "", f"{sockets} socket errors" if sockets else ""]
        text = ", ".join(part for part in parts if part)
        return f"{text} ({total} requests completed in {len(rounds)} rounds)" if text else ""


@dataclass
class Run:
    command: str
    date: str
    machine: dict[str, str]
    connections: list[int]
    rounds: int
    duration_s: float
    warmup_s: float
    rows: list[Row]
    floor: list[FloorResult] = field(default_factory=list)
    wall_s: float = 0.0

    def row(self, kind: str, name_part: str = "") -> Row | None:
        return next((r for r in self.rows if r.kind == kind and name_part in r.name), None)


def latency(us: float) -> str:
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def connection_table(run: Run, connections: int) -> str:
    b0 = run.row("b0")
    base = b0.best(connections) if b0 else None
    lines = [
        f"**{connections} connection{'s' if connections > 1 else ''}**",
        "",
        "| server | req/s | p50 | p99 | req/s vs B0 | p50 vs B0 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in run.rows:
        best = row.best(connections)
        if best is None:
            lines.append(f"| {row.name} | — | — | — | — | — | {row.note or 'no result'} |")
            continue
        wrk = best.wrk
        rps_ratio = wrk.rps / base.wrk.rps if base else None
        p50_ratio = wrk.p50_us / base.wrk.p50_us if base else None
        errors = row.errors(connections) or "none"
        lines.append(
            f"| {row.name} | {wrk.rps:,.0f} | {latency(wrk.p50_us)} | {latency(wrk.p99_us)} "
            f"| {_ratio(rps_ratio)} | {_ratio(p50_ratio)} | {errors} |"
        )
    return "\n".join(lines)


def resources_table(run: Run) -> str:
    top = max(run.connections)
    lines = [
        f"**Resources, measured around the {top}-connection run** (RSS summed over the server's process "
        "tree right after the run; CPU = utime + stime of the tree over the run / requests completed)",
        "",
        "| server | RSS of the tree | CPU per request (tree) | of which: root process | other processes |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in run.rows:
        best = row.best(top)
        if best is None or best.cpu is None or best.rss_kib is None:
            continue
        cpu = best.cpu
        lines.append(
            f"| {row.name} | {best.rss_kib / 1024:.0f} MiB | {cpu.total_us:.0f} µs | {cpu.root_us:.0f} µs "
            f"| {cpu.children_us:.0f} µs |"
        )
    return "\n".join(lines)


def ratios(run: Run) -> list[str]:
    """The bars of DESIGN.md section 4 as ratios of this run (`None` parts are left out)."""
    top, low = max(run.connections), min(run.connections)
    b0, inferd = run.row("b0"), run.row("inferd", "2 replicas")
    out: list[str] = []
    b0_top, b0_low = (b0.best(top), b0.best(low)) if b0 else (None, None)
    inf_top, inf_low = (inferd.best(top), inferd.best(low)) if inferd else (None, None)

    def verdict(ok: bool) -> str:
        return "meets the bar" if ok else "**misses the bar**"

    if b0_top and inf_top:
        value = inf_top.wrk.rps / b0_top.wrk.rps
        out.append(
            f"inferd (2 replicas) req/s / B0 req/s at {top} connections: **{value:.2f}x** "
            f"(bar >= {BAR_RPS_VS_B0}x: {verdict(value >= BAR_RPS_VS_B0)})"
        )
    if b0_low and inf_low:
        value = inf_low.wrk.p50_us / b0_low.wrk.p50_us
        out.append(
            f"inferd (2 replicas) p50 / B0 p50 at {low} connection{'s' if low > 1 else ''}: **{value:.2f}x** "
            f"(bar <= {BAR_P50_VS_B0}x: {verdict(value <= BAR_P50_VS_B0)})"
        )
    peers = [(row, row.best(top)) for row in run.rows if row.kind == "peer"]
    measured = [(row, best) for row, best in peers if best is not None]
    if inf_top and measured:
        peer, peer_best = max(measured, key=lambda pair: pair[1].wrk.rps)
        value = inf_top.wrk.rps / peer_best.wrk.rps
        out.append(
            f"inferd (2 replicas) req/s / best peer ({peer.name}) req/s at {top} connections: "
            f"**{value:.2f}x** "
            f"(bar >= {BAR_RPS_VS_PEER}x: {verdict(value >= BAR_RPS_VS_PEER)})"
        )
    elif inf_top:
        out.append("inferd / best peer: no peer was measured in this run")
    for row in run.rows:
        best = row.best(top)
        if row.kind == "inferd" and best and best.cpu:
            out.append(
                f"{row.name}: gateway {best.cpu.root_us:.0f} µs + replicas {best.cpu.children_us:.0f} µs "
                f"of CPU per request at {top} connections"
            )
    if b0_top and b0_top.cpu:
        out.append(f"B0: {b0_top.cpu.total_us:.0f} µs of CPU per request at {top} connections")
    return out


def floor_text(run: Run) -> str:
    if not run.floor:
        return ""
    best = max(run.floor, key=lambda f: f.calls_per_s)
    return (
        f"Floor (a), `session.run` in a loop in-process (one thread, no HTTP, no JSON): "
        f"**{best.calls_per_s:,.0f} calls/s, {best.us_per_call:.1f} µs per call** "
        f"(best of {len(run.floor)}). "
        "Floor (b) is the `B0 /noop` row: B0's HTTP stack with no model."
    )


def other_load_text(run: Run) -> str:
    loads = sorted(m.other_load for row in run.rows for ms in row.points.values() for m in ms)
    if not loads:
        return ""
    busy = sorted(
        {
            row.name
            for row in run.rows
            for ms in row.points.values()
            for m in ms
            if m.other_load > OTHER_LOAD_WARN
        }
    )
    text = (
        f"Other load on the machine during the runs (CPU used by neither the server, wrk nor the bench): "
        f"median {loads[len(loads) // 2]:.2f} cores, max {loads[-1]:.2f} cores."
    )
    if busy:
        text += f" Rows with a run beside more than {OTHER_LOAD_WARN} cores of it: {', '.join(busy)}."
    return text


def failures_text(run: Run) -> str:
    lines = [f"- {row.name}: {failure}" for row in run.rows for failure in row.failures]
    return "**Failed attempts**\n\n" + "\n".join(lines) if lines else ""


def tables(run: Run) -> str:
    parts = [connection_table(run, n) for n in run.connections]
    parts += [resources_table(run), floor_text(run), other_load_text(run)]
    parts.append(
        "**Ratios in this run** (bars from shared/DESIGN.md section 4)\n\n"
        + "\n".join(f"- {line}" for line in ratios(run))
    )
    parts.append(failures_text(run))
    return "\n\n".join(part for part in parts if part)


def markdown(run: Run, chart_name: str) -> str:
    machine = "\n".join(f"| {key} | {value} |" for key, value in run.machine.items())
    configs = "\n".join(f"| {row.name} | {row.config} |" for row in run.rows)
    return f"""# Benchmarks

Generated by `make bench` (bench/run.py) on {run.date}; do not edit by hand.
Command: `{run.command}` (wall time {run.wall_s / 60:.1f} min).

What: the iris ONNX example (examples/iris-onnx: 4 features in, float32 [1, 4] to onnxruntime,
the label string out) served by each design, driven by `wrk -t1 -cN -d{run.duration_s:.0f}s --latency`
on the same machine with the body of examples/iris-onnx/sample.json (V2 row: the same features
as a V2 tensor). Each server is started for its measurement on its own loopback port, warmed up
for {run.warmup_s:.0f} s, measured, then stopped, so nothing else runs beside it; servers take
turns within each round and rounds take turns within each connection count ({run.rounds} round(s)).
Each cell is the round with the **best requests/s**, with that round's latencies; errors are
summed over all rounds. Ratios are against B0 in this same run.

![requests/s and p50 latency]({chart_name})

{tables(run)}

## Machine

| | |
| --- | --- |
{machine}

## How each server was configured

| server | configuration |
| --- | --- |
{configs}
"""


def chart(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in run.rows if any(row.best(n) for n in run.connections)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    width = 0.8 / max(len(rows), 1)
    for index, row in enumerate(rows):
        xs = [c + (index - (len(rows) - 1) / 2) * width for c in range(len(run.connections))]
        bests = [row.best(n) for n in run.connections]
        left.bar(xs, [b.wrk.rps if b else 0 for b in bests], width, label=row.name)
        right.bar(xs, [b.wrk.p50_us / 1000 if b else 0 for b in bests], width, label=row.name)
    for axis, title in (
        (left, "requests/s (higher is better)"),
        (right, "p50 latency, ms (lower is better)"),
    ):
        axis.set_xticks(range(len(run.connections)), [f"{n} conn" for n in run.connections])
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    figure.suptitle(f"inferd bench, iris ONNX, {run.machine.get('cores', '')} cores, {run.date}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(run: Run, out_dir: Path, raw_json: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        chart(run, out_dir / "benchmarks.png")
    except ImportError:  # `python bench/run.py` without the bench extra: the tables still count
        print("no chart: matplotlib is missing (make bench installs it: pip install -e '.[bench]')")
    (out_dir / "benchmarks.md").write_text(markdown(run, "benchmarks.png"))
    raw_json.parent.mkdir(parents=True, exist_ok=True)
    raw_json.write_text(json.dumps(asdict(run), indent=1, default=str))
