"""Shared ONNX weights: the cached external-data copy a replica loads instead of the user's file."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inferd import onnxdata
from inferd.runtimes import load_runtime, onnx_dequantize, onnx_shared
from inferd.storage import CREATED_MARK
from tests.conftest import wait_for


def weights_model(path: Path, seed: int = 0, width: int = 256, hidden: int = 1000) -> Path:
    """x[n, width] -> MatMul -> MatMul -> y[n, width]; the weights' sizes are not page multiples."""
    rng = np.random.default_rng(seed)
    first = rng.standard_normal((width, hidden)).astype(np.float32)
    second = rng.standard_normal((hidden, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("MatMul", ["h", "w1"], ["y"])],
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        [numpy_helper.from_array(first, "w0"), numpy_helper.from_array(second, "w1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INFERD_SHARE_WEIGHTS", raising=False)
    return tmp_path / "home"


def test_the_copy_is_keyed_by_content_and_leaves_the_users_files_alone(tmp_path: Path, home: Path) -> None:
    model = weights_model(tmp_path / "project" / "model.onnx")
    before = snapshot(model.parent)
    copy = onnx_shared.shared_model(model, min_bytes=0)
    assert copy is not None and copy.parent.parent == home / "cache" / "shared"
    assert snapshot(model.parent) == before  # nothing written next to the user's model
    assert (copy.parent / CREATED_MARK).is_file()  # prune may tell it from anything else
    assert onnx_shared.in_use(copy.parent)  # this process loaded it: prune leaves it
    # the weights are in one file the replicas map, next to the model that names it
    weights = copy.parent / onnx_shared.WEIGHTS_NAME
    assert 0.9 * model.stat().st_size <= weights.stat().st_size <= 2.2 * model.stat().st_size
    locations = {
        entry.value
        for tensor in onnx.load(str(copy), load_external_data=False).graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    assert locations == {onnx_shared.WEIGHTS_NAME}
    # the same content elsewhere maps to the same copy; other content to another one
    same = tmp_path / "elsewhere" / "renamed.onnx"
    same.parent.mkdir()
    same.write_bytes(model.read_bytes())
    assert onnx_shared.shared_model(same, min_bytes=0) == copy
    other = weights_model(tmp_path / "other" / "model.onnx", seed=1)
    assert onnx_shared.shared_model(other, min_bytes=0) not in (None, copy)


def test_a_copy_keeps_marks_of_running_processes_only(tmp_path: Path, home: Path) -> None:
    model = weights_model(tmp_path / "project" / "model.onnx")
    copy = onnx_shared.shared_model(model, min_bytes=0)
    assert copy is not None
    users = copy.parent / onnx_shared.USERS
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = ended.stdout.strip()  # the pid of a process that has ended, as a replica restarted leaves
    (users / gone).touch()
    assert onnx_shared.shared_model(model, min_bytes=0) == copy  # the next replica to load it
    assert sorted(os.listdir(users)) == [str(os.getpid())]


def test_a_copy_that_cannot_be_marked_in_use_loads_the_plain_way(tmp_path: Path, home: Path) -> None:
    model = weights_model(tmp_path / "project" / "model.onnx")
    copy = onnx_shared.shared_model(model, min_bytes=0)
    assert copy is not None
    users = copy.parent / onnx_shared.USERS
    for mark in users.iterdir():
        mark.unlink()
    users.rmdir()
    users.write_text("")  # the mark cannot be written there, as on a full disk
    assert onnx_shared.shared_model(model, min_bytes=0) is None


def test_another_cpu_or_onnxruntime_gets_its_own_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # pre-packed weights are laid out for one CPU's kernels of one onnxruntime version
    key = onnx_shared.copy_key("digest")
    assert onnx_shared.copy_key("digest") == key and onnx_shared.copy_key("other") != key
    monkeypatch.setattr(onnx_shared, "cpu_identity", lambda: "flags: none")
    assert onnx_shared.copy_key("digest") != key
    monkeypatch.undo()
    monkeypatch.setattr(ort, "__version__", "0.0.1")
    assert onnx_shared.copy_key("digest") != key


def mapped_copies(home: Path) -> set[str]:
    """The files of ``home``'s shared copies this process maps."""
    root = str(home / "cache" / "shared")
    return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if root in line}


def test_replicas_load_the_copy_and_answer_as_the_plain_load_does(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = weights_model(tmp_path / "model.onnx")
    rows = np.random.default_rng(2).standard_normal((3, 256)).astype(np.float32)
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 0)
    shared = load_runtime("onnx", model)
    assert {Path(path).name for path in mapped_copies(home)} == {onnx_shared.WEIGHTS_NAME}
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "other-home"))
    plain = load_runtime("onnx", model)
    assert not (tmp_path / "other-home" / "cache" / "shared").exists()
    # the same kernels on the same pre-packed weights: the same answers, to the bit
    np.testing.assert_array_equal(shared.run({"x": rows.copy()})[0], plain.run({"x": rows.copy()})[0])
    assert [s.describe() for s in shared.inputs] == [s.describe() for s in plain.inputs]


def test_small_models_load_the_plain_way(iris_onnx_model: Path, home: Path) -> None:
    load_runtime("onnx", iris_onnx_model)
    assert not (home / "cache" / "shared").exists()


@pytest.mark.parametrize("value", ["0", "false", "off", "no"])
def test_sharing_can_be_turned_off(value: str) -> None:
    assert not onnx_shared.sharing_enabled({"INFERD_SHARE_WEIGHTS": value})
    assert onnx_shared.sharing_enabled({})


def test_a_broken_model_fails_as_it_did_before(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_text("not an onnx model\n" * 1000)
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 0)
    with pytest.raises(Exception) as shared:  # onnxruntime's own exception type
        load_runtime("onnx", broken)
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    with pytest.raises(Exception) as plain:
        load_runtime("onnx", broken)
    assert type(shared.value) is type(plain.value) and str(shared.value) == str(plain.value)
    assert str(broken) in str(shared.value)  # it names the user's file, not a cached copy
    assert not list((home / "cache" / "shared").glob("[0-9a-f]*"))  # no copy left behind
    # and the next replica does not try again
    monkeypatch.setattr(onnx_shared, "_convert", lambda *_: pytest.fail("converted again"))
    assert onnx_shared.shared_model(broken, min_bytes=0) is None


def test_a_model_without_initializers_to_map_loads_the_plain_way(tmp_path: Path, home: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    model = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    assert onnx_shared.shared_model(model, min_bytes=0) is None
    runtime = load_runtime("onnx", model)
    assert runtime.run({"x": np.array([[-1, 2, -3, 4]], dtype=np.float32)})[0].tolist() == [[0, 2, 0, 4]]


def external_copy(model: Path, folder: Path) -> Path:
    """``model`` saved again into ``folder`` with its weights in ``model.onnx.data`` beside it."""
    folder.mkdir(parents=True)
    saved = folder / "model.onnx"
    onnx.save_model(
        onnx.load(str(model)),
        str(saved),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return saved


def test_a_model_with_external_weights_is_shared_and_keyed_by_them(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = external_copy(weights_model(tmp_path / "build" / "model.onnx"), tmp_path / "project")
    data = model.parent / "model.onnx.data"
    assert model.stat().st_size < 10_000 <= data.stat().st_size  # the weights are beside the model
    assert onnxdata.external_files(model) == [data.resolve()]
    before = snapshot(model.parent)
    copy = onnx_shared.shared_model(model, min_bytes=10_000)  # the model file alone is smaller
    assert copy is not None and snapshot(model.parent) == before
    # the copy answers as the user's files do
    rows = np.random.default_rng(3).standard_normal((2, 256)).astype(np.float32)
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 10_000)
    shared = load_runtime("onnx", model)
    assert {Path(path).name for path in mapped_copies(home)} == {onnx_shared.WEIGHTS_NAME}
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    plain = load_runtime("onnx", model)
    np.testing.assert_array_equal(shared.run({"x": rows.copy()})[0], plain.run({"x": rows.copy()})[0])
    # retrained weights under a model file with the same bytes get a copy of their own
    other = external_copy(weights_model(tmp_path / "build2" / "model.onnx", seed=1), tmp_path / "project2")
    assert other.read_bytes() == model.read_bytes()
    assert onnx_shared.shared_model(other, min_bytes=10_000) not in (None, copy)


def test_external_data_outside_the_model_folder_is_not_counted(tmp_path: Path) -> None:
    model = external_copy(weights_model(tmp_path / "build" / "model.onnx"), tmp_path / "project")
    (tmp_path / "secrets.data").write_bytes(b"\0" * 100_000)  # the same length as model.onnx.data
    named = model.read_bytes().replace(b"\x0fmodel.onnx.data", b"\x0f../secrets.data")
    model.write_bytes(named)
    assert onnxdata.external_files(model) == []
    assert onnx_shared.shared_model(model, min_bytes=10_000) is None


# Run in a fresh interpreter: loads a model and prints how much anonymous memory (the heap and
# other private pages) the process gained, in bytes.
PRIVATE_GROWTH = """
import re, sys
from pathlib import Path
from typing import Any
import inferd.runtimes.onnx, inferd.runtimes.onnx_shared
from inferd.runtimes import load_runtime

def anonymous() -> int:
    rollup = Path("/proc/self/smaps_rollup").read_text()
    return int(re.search(r"\\nAnonymous:\\s+(\\d+)", rollup).group(1)) * 1024

before = anonymous()
runtime = load_runtime("onnx", Path(sys.argv[1]))
print(anonymous() - before)
"""


def matmul_chain(path: Path, layers: list[np.ndarray[Any, Any]]) -> Path:
    """h0[n, width] -> one MatMul per layer -> h{len(layers)}, saved at ``path``."""
    count = len(layers)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(count)],
        "layers",
        [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [None, layers[0].shape[0]])],
        [helper.make_tensor_value_info(f"h{count}", TensorProto.FLOAT, [None, layers[-1].shape[1]])],
        [numpy_helper.from_array(layer, f"w{i}") for i, layer in enumerate(layers)],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def private_growth(model: Path) -> list[int]:
    """The heap bytes a replica gains loading ``model`` (``PRIVATE_GROWTH``): the replica that
    made the copy, then one that finds it made, each in a fresh interpreter."""
    growth = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", PRIVATE_GROWTH, str(model)], capture_output=True, text=True, check=True
        )
        growth.append(int(done.stdout.split()[-1]))
    return growth


def test_a_replica_keeps_no_private_copy_of_weights_it_maps(tmp_path: Path, home: Path) -> None:
    # onnxruntime reads each weight onto the heap while it loads the copy, then frees it for the
    # mapped, pre-packed one; the C allocator kept those pages, so every replica held tens of MiB
    # of freed weights of its own (142 MiB of a model with twelve 20 MiB layers)
    rng = np.random.default_rng(4)
    layers = [rng.standard_normal((2048, 2048)).astype(np.float32) for _ in range(4)]  # 64 MiB
    model = matmul_chain(tmp_path / "model.onnx", layers)
    del layers
    growth = private_growth(model)
    assert max(growth) < 8 << 20, growth  # weights: 64 MiB


# Run in a fresh interpreter: the copy made under a 1 MiB limit on the size of files written, so
# the converter cannot write the weights, as on a full disk.
LIMITED_COPY = """
import resource, sys
from pathlib import Path
from typing import Any
from inferd.runtimes import onnx_shared

resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
print(onnx_shared.shared_model(Path(sys.argv[1]), min_bytes=0))
"""


def test_a_copy_that_could_not_be_written_is_tried_again(tmp_path: Path, home: Path) -> None:
    # it was marked "load the plain way" for good, as a model onnxruntime cannot load is
    model = weights_model(tmp_path / "model.onnx", width=512, hidden=2000)  # 8 MiB of weights
    done = subprocess.run(
        [sys.executable, "-c", LIMITED_COPY, str(model)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "None"  # this replica loads the plain way
    copy = onnx_shared.shared_model(model, min_bytes=0)  # the next one converts it
    assert copy is not None and copy.is_file()


# Run in a fresh interpreter: a replica that makes the shared copy of a model.
MAKES_COPY = """
import sys
from pathlib import Path
from typing import Any
from inferd.runtimes import onnx_shared

onnx_shared.shared_model(Path(sys.argv[1]), min_bytes=0)
"""


def converters_of(model: Path) -> list[int]:
    """The running converter processes of ``model`` (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if b"inferd.runtimes.onnx_shared" in command and str(model).encode() in command and state != "Z":
            found.append(int(entry.name))
    return found


def test_the_converter_ends_with_the_replica_that_started_it(tmp_path: Path, home: Path) -> None:
    # a replica stopped while it loads (`inferd down`, Ctrl-C, a crash) left its converter running
    # to the end, writing twice the weights' size into the cache with nobody to use it
    model = weights_model(tmp_path / "model.onnx", width=512, hidden=2000)
    replica = subprocess.Popen([sys.executable, "-c", MAKES_COPY, str(model)])
    try:
        converter = wait_for(lambda: converters_of(model), what="the converter")[0]
        os.kill(converter, signal.SIGSTOP)  # held before it writes anything
        replica.kill()
        replica.wait()
        os.kill(converter, signal.SIGCONT)
        wait_for(lambda: not converters_of(model), what="the converter to end")
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait()
    assert not list(home.rglob(onnx_shared.WEIGHTS_NAME))


def weight_only_int8_model(path: Path) -> Path:
    """x[n, 1024] -> 4 x (int8 weights -> DequantizeLinear -> MatMul): 8 MiB of int8, 32 MiB as floats."""
    rng = np.random.default_rng(5)
    dims = [1024, 2048, 1024, 2048, 1024]
    nodes, weights = [], []
    for i in range(4):
        weights += [
            numpy_helper.from_array(rng.integers(-127, 128, (dims[i], dims[i + 1]), dtype=np.int8), f"q{i}"),
            numpy_helper.from_array(np.array(0.01, dtype=np.float32), f"s{i}"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), f"z{i}"),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"w{i}"]),
            helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"]),
        ]
    graph = helper.make_graph(
        nodes,
        "int8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1024])],
        [helper.make_tensor_value_info("h4", TensorProto.FLOAT, [None, 1024])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


# Run in a fresh interpreter: the memory a replica keeps of its own once it has answered.
PRIVATE_AFTER_RUN = """
import re, sys
from pathlib import Path
from typing import Any
import numpy as np
import inferd.runtimes.onnx
from inferd.runtimes import load_runtime, onnx_shared

def anonymous() -> int:
    rollup = Path("/proc/self/smaps_rollup").read_text()
    return int(re.search(r"\\nAnonymous:\\s+(\\d+)", rollup).group(1)) * 1024

onnx_shared.MIN_SHARED_BYTES = 0
before = anonymous()
runtime = load_runtime("onnx", Path(sys.argv[1]))
for _ in range(3):
    runtime.run({"x": np.ones((2, 1024), dtype=np.float32)})
print(anonymous() - before)
"""


def test_weight_only_quantized_weights_are_shared_dequantized(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime dequantized an int8 model's weights on every request into each replica's own
    # memory: 4 replicas of one with 64 MiB of int8 weights held 4 x 256 MiB of floats
    model = weight_only_int8_model(tmp_path / "int8.onnx")
    for _ in range(2):  # the replica that made the copy, then one that finds it made
        done = subprocess.run(
            [sys.executable, "-c", PRIVATE_AFTER_RUN, str(model)], capture_output=True, text=True, check=True
        )
        assert int(done.stdout.split()[-1]) < 8 << 20, done.stdout  # as floats: 32 MiB
    rows = np.random.default_rng(6).standard_normal((3, 1024)).astype(np.float32)
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 0)
    shared = load_runtime("onnx", model)
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    plain = load_runtime("onnx", model)
    np.testing.assert_array_equal(shared.run({"x": rows.copy()})[0], plain.run({"x": rows.copy()})[0])


def test_weights_onnxruntime_fuses_out_of_dequantize_answer_as_the_plain_load(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one int8 DequantizeLinear before one MatMul: onnxruntime 1.32 fuses the pair into a
    # MatMulNBits of 8 bits (int8 arithmetic); the copy multiplied the dequantized floats instead,
    # and a replica's answers were off the plain load's by up to 2% (1.0 in 52)
    rng = np.random.default_rng(8)
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=1),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        "fused",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2048])],
        [
            numpy_helper.from_array(rng.integers(-127, 128, (1024, 2048), dtype=np.int8), "q"),
            numpy_helper.from_array((rng.random(2048) * 0.01 + 0.001).astype(np.float32), "s"),
            numpy_helper.from_array(np.zeros(2048, dtype=np.int8), "z"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "fused.onnx"))
    rows = rng.standard_normal((3, 1024)).astype(np.float32)
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 0)
    shared = load_runtime("onnx", tmp_path / "fused.onnx")
    assert mapped_copies(home)
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    plain = load_runtime("onnx", tmp_path / "fused.onnx")
    np.testing.assert_array_equal(shared.run({"x": rows.copy()})[0], plain.run({"x": rows.copy()})[0])


def test_only_weight_only_quantized_models_are_dequantized_in_the_copy(tmp_path: Path) -> None:
    # activations quantized too (QuantizeLinear), or float weights multiplied beside the int8
    # ones: onnxruntime's own fusions and pre-packing stay, so the copy keeps the plain answers
    model = weight_only_int8_model(tmp_path / "int8.onnx")
    assert onnx_dequantize.weight_only_quantized(model)
    loaded = onnx.load(str(model))
    mixed = tmp_path / "mixed.onnx"
    loaded.graph.node[1].input[1] = "f0"
    loaded.graph.initializer.append(numpy_helper.from_array(np.ones((1024, 2048), dtype=np.float32), "f0"))
    onnx.save_model(loaded, str(mixed))
    assert not onnx_dequantize.weight_only_quantized(mixed)
    quantized = tmp_path / "qdq.onnx"
    loaded = onnx.load(str(model))
    loaded.graph.node.insert(0, helper.make_node("QuantizeLinear", ["x", "s0", "z0"], ["xq"]))
    onnx.save_model(loaded, str(quantized))
    assert not onnx_dequantize.weight_only_quantized(quantized)
    assert not onnx_dequantize.weight_only_quantized(tmp_path / "missing.onnx")


# Run in a fresh interpreter: how much of the copy's weights a replica holds once it has loaded.
RESIDENT = """
import sys
from pathlib import Path
from typing import Any
from inferd.runtimes import load_runtime, onnx_shared

onnx_shared.MIN_SHARED_BYTES = 0
runtime = load_runtime("onnx", Path(sys.argv[1]))
resident, current = 0, ""
for line in Path("/proc/self/smaps").read_text().splitlines():
    head = line.split(maxsplit=5)  # a path may hold spaces (a TMPDIR's, under tmp_path)
    if "-" in head[0] and ":" not in head[0]:
        current = head[5] if len(head) > 5 else ""
    elif head[0] == "Rss:" and current.endswith("/" + onnx_shared.WEIGHTS_NAME):
        resident += int(head[1]) * 1024
print(resident)
"""


def test_a_replica_holds_all_the_weights_it_maps_before_any_request(tmp_path: Path, home: Path) -> None:
    # an embedding table mapped lazily: a replica held only the rows its requests had read, so
    # one replica's memory (and 4 replicas' against one) depended on its traffic
    table = np.random.default_rng(7).standard_normal((65536, 64)).astype(np.float32)  # 16 MiB
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
        [numpy_helper.from_array(table, "table")],
    )
    model = tmp_path / "embedding.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    for _ in range(2):  # the replica that made the copy, then one that finds it made
        done = subprocess.run(
            [sys.executable, "-c", RESIDENT, str(model)], capture_output=True, text=True, check=True
        )
        assert int(done.stdout.split()[-1]) >= table.nbytes, done.stdout


def test_a_tree_ensemble_is_not_shared_and_not_converted_again(tmp_path: Path, home: Path) -> None:
    # skl2onnx keeps a forest's trees in node attributes, not initializers: onnxruntime builds
    # its own structures from them in each replica, so there is nothing to map (README says so)
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, x[:, 0])
    model = tmp_path / "forest.onnx"
    onnx.save_model(to_onnx(forest, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), str(model))
    assert onnx_shared.shared_model(model, min_bytes=0) is None
    marks = list((home / "cache" / "shared").glob(".*.plain"))
    assert len(marks) == 1  # the next replica loads it the plain way without trying again
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"X": x[:2]})
    assert np.array_equal(load_runtime("onnx", model).run({"X": x[:2]})[0], expected[0])


def test_a_model_in_a_folder_whose_name_is_not_utf8_is_shared(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The converter gave onnxruntime ".../caf\udce9/model.onnx" (it takes UTF-8 paths only) and
    # failed: the replica mapped the user's own weights file, and the copy's key was marked as
    # never to be shared, so the same model in any other folder loaded the plain way too.
    built = external_copy(weights_model(tmp_path / "build" / "model.onnx"), tmp_path / "built")
    latin = tmp_path / os.fsdecode(b"caf\xe9")
    built.parent.rename(latin)
    model = latin / "model.onnx"
    copy = onnx_shared.shared_model(model, min_bytes=10_000)
    assert copy is not None and copy.parent.parent == home / "cache" / "shared"
    elsewhere = external_copy(weights_model(tmp_path / "build" / "model.onnx"), tmp_path / "project")
    assert onnx_shared.shared_model(elsewhere, min_bytes=10_000) == copy
    monkeypatch.setattr(onnx_shared, "MIN_SHARED_BYTES", 10_000)
    shared = load_runtime("onnx", model)
    assert {Path(path).name for path in mapped_copies(home)} == {onnx_shared.WEIGHTS_NAME}
    rows = np.random.default_rng(4).standard_normal((2, 256)).astype(np.float32)
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    plain = load_runtime("onnx", model)
    np.testing.assert_array_equal(shared.run({"x": rows.copy()})[0], plain.run({"x": rows.copy()})[0])


def test_every_replica_of_a_model_that_is_not_shared_logs_why(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Was: only the replica that tried the copy said so, as "not shared (no weights file
    # written)"; the others, finding the mark it left, loaded the plain way without a word
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    model = tmp_path / "linear.onnx"
    onnx.save_model(to_onnx(LinearRegression().fit(x, x[:, 0]), x[:1], target_opset=17), str(model))
    with caplog.at_level(logging.INFO, logger="inferd.replica"):
        for _ in range(2):  # the replica that tried, then one that finds it tried
            assert onnx_shared.shared_model(model, min_bytes=0) is None
    said = [record.getMessage() for record in caplog.records if "not shared" in record.getMessage()]
    assert len(said) == 2, said
    assert all("node attributes" in line and "linear.onnx" in line for line in said), said


def test_weights_in_a_thousand_small_initializers_are_shared(tmp_path: Path, home: Path) -> None:
    # each of them mapped on its own from the copy (a mapping per weight), not held on the heap;
    # what onnxruntime builds per node and per weight stays each replica's own (README says so)
    rng = np.random.default_rng(5)
    layers = [(rng.standard_normal((128, 128)) / np.sqrt(128)).astype(np.float32) for _ in range(1000)]
    model = matmul_chain(tmp_path / "model.onnx", layers)  # 1,000 weights of 64 KiB: 62.5 MiB
    del layers
    growth = private_growth(model)
    assert max(growth) < 24 << 20, growth
    x = np.linspace(-1, 1, 256, dtype=np.float32).reshape(2, 128)
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"h0": x})[0]
    assert np.array_equal(load_runtime("onnx", model).run({"h0": x})[0], expected)
