"""What reading JSON tensors costs on the V2 and TF Serving routes, against an older commit.

Decodes the same bodies as the replica does (``v2.decode_request``; ``tfserving.decode_predict``,
with the older code's extra ``signature_name`` parse) for float32 and int64 inputs of shape
[1, 4], [32, 4] and [1000, 4]. The older ``src`` is taken with ``git archive`` and imported as
``inferd_old`` in the same process, and the two alternate round by round (the machine's noise
moved single runs by tens of percent). Each figure: the least of the rounds' timeit best of 5,
in this process's CPU time, microseconds per call.

    .venv/bin/python bench/json_tensors.py --baseline c6f99db^

c6f99db^ is the code before V2 and TF Serving refused null and text for numbers. The run of
2026-11-30 (2 shared cores, load average 3): TF Serving :predict, float32 [1, 4] 7.3 -> 8.7 us,
[32, 4] 49 -> 29 us, [1000, 4] 1,426 -> 463 us (its {"b64"} walk and second parse gone); V2
infer, flat float32 [1, 4] 22.7 -> 11.6 us, [1000, 4] 268 -> 285 us; int64 alike.
"""

from __future__ import annotations

import argparse
import importlib
import random
import re
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent


def _old_package(ref: str, into: Path) -> None:
    """``src/inferd`` at ``ref`` as the package ``inferd_old`` under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src/inferd"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    package = into / "inferd_old"
    (into / "src" / "inferd").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bfrom inferd([. ])", r"from inferd_old\1", text)
        text = re.sub(r"\bimport inferd\b", "import inferd_old", text)
        path.write_text(text.replace('"inferd.', '"inferd_old.'))


def _tf_old(tf: Any, body: bytes, spec: Any) -> Any:
    return tf.signature_name(body), tf.decode_predict(body, [spec])  # it read the body twice


def _tf_new(tf: Any, body: bytes, spec: Any) -> Any:
    return tf.decode_predict(body, lambda name: [spec])


def _v2_old(v2: Any, body: bytes, spec: Any) -> Any:
    return v2.decode_request(body, None, [spec])


def _v2_new(v2: Any, body: bytes, spec: Any) -> Any:
    return v2.decode_request(body, None, lambda name: [spec])


def _best(call: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5, timer=time.process_time)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="c6f99db^", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="inferd-json-tensors-") as folder:
        _old_package(options.baseline, Path(folder))
        sys.path.insert(0, folder)
        new = {
            name: importlib.import_module(f"inferd.{name}")
            for name in ("protocols.v2", "protocols.tfserving")
        }
        old = {
            name: importlib.import_module(f"inferd_old.{name}")
            for name in ("protocols.v2", "protocols.tfserving")
        }
        spec_new: Any = importlib.import_module("inferd.runtimes.base").TensorSpec
        spec_old: Any = importlib.import_module("inferd_old.runtimes.base").TensorSpec
        random.seed(0)
        print(f"{'':44s} {options.baseline:>12s} {'now':>9s}")
        for kind, dtype, ints in (("FP32", np.float32, False), ("INT64", np.int64, True)):
            type_name = "tensor(int64)" if ints else "tensor(float)"
            spec = spec_new("x", np.dtype(dtype), (None, 4), type_name)
            ospec = spec_old("x", np.dtype(dtype), (None, 4), type_name)
            for rows, number in ((1, 2000), (32, 300), (1000, 10)):
                nested = [
                    [random.randint(0, 100) if ints else random.random() for _ in range(4)]
                    for _ in range(rows)
                ]
                flat = [value for row in nested for value in row]
                cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
                old_tf, new_tf = old["protocols.tfserving"], new["protocols.tfserving"]
                for key in ("instances", "inputs"):
                    body = orjson.dumps({key: nested})
                    label = f"TF Serving :predict {kind} [{rows},4] {key}"
                    cases.append(
                        (label, partial(_tf_old, old_tf, body, ospec), partial(_tf_new, new_tf, body, spec))
                    )
                tensor = {"name": "x", "datatype": kind, "shape": [rows, 4], "data": flat}
                body = orjson.dumps({"inputs": [tensor]})
                old_v2, new_v2 = old["protocols.v2"], new["protocols.v2"]
                label = f"V2 infer {kind} [{rows},4] flat"
                cases.append(
                    (label, partial(_v2_old, old_v2, body, ospec), partial(_v2_new, new_v2, body, spec))
                )
                for label, before, after in cases:
                    was = now = float("inf")
                    for _ in range(options.rounds):
                        was = min(was, _best(before, number))
                        now = min(now, _best(after, number))
                    print(
                        f"{label:44s} {was:9.2f} us {now:9.2f} us {(now - was) / was * 100:+5.0f}%",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
