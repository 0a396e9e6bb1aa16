"""`make bench`: inferd against B0, the floor and the peers, interleaved in one run on this machine.

Absolute numbers on a shared 2-core box drift from minute to minute, so the only numbers worth
keeping are ratios taken in one run with the servers taking turns: for each connection count,
each round runs every server once, one server at a time, each on a fresh process. The output is
docs/benchmarks.md and docs/benchmarks.png (bench/results/ for --quick runs), and the tables on
stdout. This is a measurement, never a test: nothing here asserts on time.

    python bench/run.py                 # full: 2 rounds x 5 s at 1, 8 and 32 connections, peers
    python bench/run.py --quick         # ~1 minute: 1 round x 2 s at 1 and 32 connections
    python bench/run.py --quick --no-peers
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/run.py` puts bench/, not the repository, on the path

from bench import measure, report, servers  # noqa: E402

EXAMPLE = ROOT / "examples" / "iris-onnx"
MODEL = EXAMPLE / "models" / "iris.onnx"
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "post.lua"
V2_BODY = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.2,3.6,1.4,0.3]}]}'


@dataclass(frozen=True)
class Target:
    """A row of the report: a route on one of the servers."""

    name: str
    server: str  # ServerSpec.key
    kind: str
    path: str
    body: Path
    optional: bool = False  # a 404 means the route has not landed yet: 'not available'


def targets_for(specs: list[servers.ServerSpec], sample: Path, v2: Path) -> list[Target]:
    targets = [
        Target("B0", "b0", "b0", "/iris/classifier", sample),
        Target("B0 /noop (floor b)", "b0", "noop", "/noop", sample),
        Target("inferd, 1 replica", "inferd1", "inferd", "/iris/classifier", sample),
        Target("inferd, 2 replicas", "inferd2", "inferd", "/iris/classifier", sample),
        Target("inferd V2, 2 replicas", "inferd2", "v2", "/v2/models/classifier/infer", v2, optional=True),
    ]
    own = {target.server for target in targets}
    targets += [Target(s.label, s.key, "peer", "/iris/classifier", sample) for s in specs if s.key not in own]
    return targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s per point, 1 and 32 connections")
    parser.add_argument("--no-peers", action="store_true", help="skip LitServe, BentoML and Ray Serve")
    parser.add_argument("--rounds", type=int, help="rounds per point (default 2; 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--connections", type=int, nargs="+", help="default 1 8 32 (1 32 with --quick)")
    parser.add_argument(
        "--out", type=Path, help="where benchmarks.md/.png go (default docs/, or bench/results/)"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.connections = sorted(set(args.connections or ([1, 32] if args.quick else [1, 8, 32])))
    args.out = args.out or (RESULTS if args.quick else ROOT / "docs")
    return args


def sample_answer(port: int, probe: servers.Probe) -> str:
    """What one more request gets right after a run with errors, to show what went wrong."""
    try:
        status, body = servers.request(port, probe)
    except OSError as exc:
        return f"a request right after failed: {exc}"
    return f"a request right after got {status} {body[:160].decode(errors='replace')!r}"


def measure_server(
    spec: servers.ServerSpec,
    targets: list[Target],
    rows: dict[str, report.Row],
    connections: int,
    round_: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> None:
    """Start one server, drive each of its routes at `connections`, stop it. Failures become notes."""
    top = connections == max(args.connections)
    try:
        with servers.RunningServer(spec, log_dir) as server:
            server.wait_ready()
            for target in targets:
                row = rows[target.name]
                if target.optional and row.note and row.note.startswith("not available"):
                    continue  # found missing earlier in this run
                probe = servers.Probe("POST", target.path, target.body.read_bytes())
                if target.optional:
                    status, _ = servers.request(server.port, probe)
                    if status == 404:
                        row.note = f"not available: POST {target.path} answers 404"
                        continue
                url = server.url(target.path)
                measure.run_wrk(url, connections, args.warmup, target.body, LUA)
                window = measure.Window.open(server.pid)
                result = measure.run_wrk(url, connections, args.duration, target.body, LUA)
                cpu, other = window.close(result.requests)
                rss = measure.tree_rss_kib(server.pid) if top else None
                row.points.setdefault(connections, []).append(
                    report.Measurement(round_, result, cpu, rss, other)
                )
                errors = f"  ERRORS: {result.error_text()}" if result.errors else ""
                if other > report.OTHER_LOAD_WARN:
                    errors += f"  (other load {other:.2f} cores)"
                if result.errors:
                    row.failures.append(
                        f"{connections} connections, round {round_ + 1}: wrk counted {result.error_text()}; "
                        + sample_answer(server.port, probe)
                    )
                print(
                    f"  [{connections:>3} conn, round {round_ + 1}/{args.rounds}] {target.name:<28} "
                    f"{result.rps:>9,.0f} req/s  p50 {report.latency(result.p50_us):>9}  "
                    f"p99 {report.latency(result.p99_us):>9}{errors}",
                    flush=True,
                )
    except (servers.ServerError, measure.MeasureError, OSError) as exc:
        message = f"{spec.label} failed at {connections} connections, round {round_ + 1}: {exc}"
        print(f"  {message}", flush=True)
        for target in targets:
            rows[target.name].failures.append(f"{connections} connections, round {round_ + 1}: {exc}"[:300])
            rows[target.name].note = f"failed: {exc}"[:200]


def bench(args: argparse.Namespace) -> report.Run:
    started = time.monotonic()
    measure.ensure_wrk()
    if not MODEL.is_file():
        raise SystemExit(f"bench: {MODEL.relative_to(ROOT)} is missing; run `make models` first")
    busy = measure.other_load(2.0)
    if busy > report.OTHER_LOAD_WARN:
        print(f"bench: warning: other processes keep {busy:.1f} cores busy; expect noisy numbers", flush=True)
    peers = [] if args.no_peers else servers.prepare_peers(CACHE)
    for env in peers:
        print(f"bench: peer {env.peer.label}: {env.error or 'ready, ' + env.version}", flush=True)
    if peers:
        print(f"bench: peer venvs ready after {time.monotonic() - started:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="inferd-bench-") as tmp:
        workdir = Path(tmp)
        sample = EXAMPLE / "sample.json"
        v2 = workdir / "v2.json"
        v2.write_bytes(V2_BODY)
        log_dir = RESULTS / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):
            old.unlink()
        specs = servers.build_servers(ROOT, MODEL, sample.read_bytes(), workdir, peers, CACHE)
        targets = targets_for(specs, sample, v2)
        config = {spec.key: spec.config for spec in specs}
        rows = {t.name: report.Row(t.name, t.kind, config[t.server]) for t in targets}
        for spec in specs:
            if spec.unavailable:
                for target in targets:
                    if target.server == spec.key:
                        rows[target.name].note = spec.unavailable
        run = report.Run(
            command=("make bench  # " if os.environ.get("MAKELEVEL") else "")
            + " ".join(["python bench/run.py", *sys.argv[1:]]),
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=measure.machine_info() | {env.peer.distribution: env.version or "-" for env in peers},
            connections=args.connections,
            rounds=args.rounds,
            duration_s=args.duration,
            warmup_s=args.warmup,
            rows=list(rows.values()),
        )
        runnable = [spec for spec in specs if not spec.unavailable]
        for connections in args.connections:
            for round_ in range(args.rounds):
                if connections == args.connections[0]:
                    floor = measure.session_run_floor(MODEL, args.duration)
                    run.floor.append(floor)
                    print(
                        f"  [floor a, round {round_ + 1}] session.run {floor.calls_per_s:,.0f} calls/s",
                        flush=True,
                    )
                for spec in runnable:
                    mine = [t for t in targets if t.server == spec.key]
                    measure_server(spec, mine, rows, connections, round_, args, log_dir)
        run.wall_s = time.monotonic() - started
        return run


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    atexit.register(servers.stop_all)
    print(
        f"bench: {args.rounds} round(s) x {args.duration:.0f} s (+{args.warmup:.0f} s warm-up) at "
        f"{' '.join(map(str, args.connections))} connections, peers {'off' if args.no_peers else 'on'}",
        flush=True,
    )
    try:
        run = bench(args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        servers.stop_all()
        print("\nbench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        servers.stop_all()
    report.write(run, args.out, RESULTS / "latest.json")
    print()
    print(report.tables(run))
    print(f"\nbench: wrote {args.out / 'benchmarks.md'} and benchmarks.png in {run.wall_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
