"""inferd now against inferd at an older git revision, in one run: requests/s, p50 and CPU.

Serves examples/iris-onnx with exactly 2 replicas (``inferd serve``, defaults otherwise) from
each source tree in turn (the older one checked out in a temporary git worktree; the examples
and this script stay the current ones), rounds alternating which goes first, each server
measured once idle. Prints each round and the medians.

Usage: ``python bench/compare.py REV [--connections N] [--rounds N] [--duration S]``
(``python bench/compare.py 83f226e --connections 1`` compares with main before round two).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import measure, servers  # noqa: E402

SAMPLE = ROOT / "examples" / "iris-onnx" / "sample.json"
LUA = ROOT / "bench" / "post.lua"
INFERD = Path(sys.executable).parent / "inferd"


def measure_tree(
    name: str, source: Path, project: Path, work: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(req/s, p50 us, CPU us per request of the whole tree) of one server from ``source``."""
    spec = servers.ServerSpec(
        name,
        name,
        servers.with_port(INFERD, "serve", project, flag="--port"),
        servers.Probe("GET", "/healthz"),
        f"inferd serve from {source}",
        # the server and its replicas import this inferd, with a home of its own
        env={"PYTHONPATH": str(source), "INFERD_HOME": str(work / f"home-{name}")},
    )
    with servers.RunningServer(spec, work) as server:
        server.wait_ready()
        url = server.url("/iris/classifier")
        measure.run_wrk(url, args.connections, 1.0, SAMPLE, LUA)
        before = {p.pid: p.cpu_seconds for p in measure.process_tree(server.pid)}
        result = measure.run_wrk(url, args.connections, args.duration, SAMPLE, LUA)
        after = {p.pid: p.cpu_seconds for p in measure.process_tree(server.pid)}
    if result.errors or not result.requests:
        raise SystemExit(f"{name}: wrk counted errors: {result.error_text()}")
    cpu = sum(after[pid] - before.get(pid, 0.0) for pid in after) / result.requests * 1e6
    return result.rps, result.p50_us, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revision", help="the older inferd (a git revision of this repository)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per tree (default 4)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of wrk per round (default 5)")
    args = parser.parse_args(argv)
    measure.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="inferd-compare-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(tree), args.revision],
            check=True,
        )
        try:
            project = servers.inferd_project(ROOT / "examples" / "iris-onnx", work, 2)
            trees = {args.revision: tree / "src", "now": ROOT / "src"}
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
            for round_ in range(args.rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    rps, p50, cpu = measure_tree(name, trees[name], project, work, args)
                    results[name].append((rps, p50, cpu))
                    print(
                        f"round {round_ + 1}: {name:<12} {rps:>9,.0f} req/s  p50 {p50:>8,.0f} us  "
                        f"CPU {cpu:6.1f} us per request",
                        flush=True,
                    )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"{args.connections} connection(s), medians of {args.rounds} rounds:")
    for name, rows in results.items():
        print(
            f"  {name:<12} {statistics.median(r[0] for r in rows):>9,.0f} req/s  "
            f"p50 {statistics.median(r[1] for r in rows):>8,.0f} us  "
            f"CPU {statistics.median(r[2] for r in rows):6.1f} us per request"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
