"""Shared ONNX weights: one copy of a model's weights in memory for every replica.

onnxruntime memory-maps initializers stored as external data (a separate weights file) when it
loads a model, instead of copying them onto its heap, and it can save the weights it pre-packs
for its MatMul kernels into that file too. So a replica loads a copy of the user's model that
onnxruntime optimized once into inferd's cache (``$INFERD_HOME/cache/shared/<key>``, keyed by
the model file's content hash, onnxruntime's version and the CPU, since pre-packed weights are
laid out for it), never touching the user's files: every replica of the API, and of any API
serving the same model, maps the same pages of the page cache, and runs the same kernels on the
same pre-packed weights as a plain load, so answers and speed do not change. Measured by
``bench/memory.py`` (see docs/benchmarks.md).

A model saved with its weights already in external data files (``onnx.save_model(...,
save_as_external_data=True)``, the usual way for large models) is shared too: its size, and the
copy's key, count the files it names beside it. (onnxruntime maps such files as well, but the
weights it pre-packs from them would be each replica's own.)

Models under ``MIN_SHARED_BYTES`` load the plain way (nothing to gain) unless their weights are in
external data files (onnxruntime would map the user's files), as does every model when
``INFERD_SHARE_WEIGHTS=0`` and on a GPU (it copies the weights into its own memory). A model
that cannot be converted (not a valid ONNX file, say) also loads the plain way, so onnxruntime
reports it exactly as before, and is not tried again; one whose copy could not be written (a
full disk, the converter killed for memory) loads the plain way this time only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from inferd.onnxdata import external_files
from inferd.runtimes.base import utf8_path
from inferd.runtimes.onnx_dequantize import dequantized_each_run, weight_only_quantized
from inferd.storage import cache_dir, file_digest, scratch_folder

log = logging.getLogger("inferd.replica")

MIN_SHARED_BYTES = 16 << 20  # a model file smaller than this loads the plain way
INLINE_BYTES = 1024  # smaller initializers stay inside the model file
MODEL_NAME = "model.onnx"
WEIGHTS_NAME = "weights.bin"
UNPACKED_NAME = "unpacked"  # marks a copy that holds dequantized weights: load it without pre-packing
LOCK_NAME = re.compile(r"^\.([0-9a-f]{32})\.lock$")  # a copy's lock: made beside it, kept while it is
USERS = "replicas"  # one empty file per process that loaded the copy, named by its pid
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends
MADV_POPULATE_READ = 22  # madvise(2), Linux 5.14: map a range's pages in now
NOT_WRITTEN = 3  # the converter's exit status when the model loads but its copy was not written
NO_WEIGHTS = (
    f"it holds no initializers of {INLINE_BYTES} bytes or more to map: its parameters are node attributes "
    "(as skl2onnx writes tree ensembles, SVMs and linear models), which onnxruntime builds in each replica"
)


def sharing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether replicas share ONNX weights (``INFERD_SHARE_WEIGHTS``, on by default)."""
    return environ.get("INFERD_SHARE_WEIGHTS", "1").strip().lower() not in ("0", "false", "no", "off")


def shared_root() -> Path:
    """Where the converted copies live."""
    return cache_dir() / "shared"


def shared_model(model_path: Path, min_bytes: int | None = None) -> Path | None:
    """The cached copy of ``model_path`` with external weights, made if missing; None: load as is.

    Replicas starting together convert once: the first takes a lock on the copy's digest, the
    others wait for it and find the copy made.
    """
    limit = MIN_SHARED_BYTES if min_bytes is None else min_bytes
    try:
        size = model_path.stat().st_size
        data = external_files(model_path)  # weights in files beside it
        # onnxruntime maps external data files: loaded the plain way, a replica would map the
        # user's own, and weights rewritten in place under it changed its answers or killed it
        # (SIGBUS). Whatever their size, it maps the copy, which nobody writes.
        if not data and size < limit:
            return None
        digest = copy_key(file_digest(model_path), *(file_digest(path) for path in data))
    except OSError:
        return None  # the plain load reports it
    try:
        return _copy_for(model_path, shared_root() / digest)
    except OSError as exc:  # the cache cannot be written (a full disk): the plain load still runs
        log.warning("weights of %s not shared this time (%s); loading it the plain way", model_path.name, exc)
        return None


def _copy_for(model_path: Path, target: Path) -> Path | None:
    """``shared_model`` once the copy's folder is known: made under its lock, this process its user."""
    digest = target.name
    # A model that gave no copy (no initializers to map, or one onnxruntime cannot load) is not
    # tried again by every replica that starts.
    plain = target.parent / f".{digest}.plain"
    if plain.exists():
        _tried(model_path, plain)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{digest}.lock"):
        if plain.exists():
            _tried(model_path, plain)
            return None
        if not (target / MODEL_NAME).is_file():
            try:
                _convert(model_path, target)
            except OSError:  # out of memory or disk (ChildProcessError too): tried again next time
                raise
            except Exception as exc:  # a model onnxruntime cannot load: the plain load says why
                log.info("weights of %s not shared (%s); loading it the plain way", model_path.name, exc)
                with contextlib.suppress(OSError):  # a full disk: the plain load still runs
                    plain.write_text(f"{exc}\n")
                return None
        # Under the lock, so ``inferd prune`` (which takes it too) sees this replica use the copy.
        users = target / USERS
        users.mkdir(exist_ok=True)
        forget_ended(users)
        (users / str(os.getpid())).touch()
    return target / MODEL_NAME


def _tried(model_path: Path, plain: Path) -> None:
    """Say, in every replica, why an earlier one found the model's weights cannot be shared."""
    try:
        reason = plain.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        reason = ""
    log.info(
        "weights of %s not shared (%s); loading it the plain way", model_path.name, reason or "tried before"
    )


def forget_ended(users: Path) -> None:
    """Remove the marks of processes that ended: a copy an API uses for months would otherwise
    gain one file for every replica started (restarts, autoscaling)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(users):
            if name.isdigit() and not os.path.exists(f"/proc/{name}"):
                with contextlib.suppress(OSError):
                    (users / name).unlink()


def _lock(path: Path, wait: bool) -> TextIO | None:
    """``path`` opened and locked; None when another process holds it (``wait`` False).

    The lock is the file the name holds once locked: ``forget_locks`` may unlink a lock file
    while a process waits on it, and that process then locks the new one the name holds.
    """
    while True:
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:  # unlinked once locked: lock the one made again
            pass
        except OSError:
            handle.close()
            if wait:
                raise
            return None
        handle.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[TextIO]:
    handle = _lock(path, wait=True)
    assert handle is not None
    with handle:
        yield handle


@contextlib.contextmanager
def unused(copy: Path) -> Iterator[bool]:
    """Inside: whether ``copy`` may be removed (no running process loaded it), under its lock.

    Never waits: while a replica makes or registers the copy, it is in use.
    """
    try:
        handle = _lock(copy.parent / f".{copy.name}.lock", wait=False)
    except OSError:
        handle = None
    if handle is None:
        yield False
        return
    with handle:
        yield not in_use(copy)


def forget_locks(root: Path) -> int:
    """Remove the lock files of copies no longer in ``root`` (collected); how many.

    Each is unlinked under its lock, so no process is making that copy meanwhile.
    """
    removed = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        found = LOCK_NAME.match(name)
        if found is None or (root / found.group(1)).exists():
            continue
        try:
            handle = _lock(root / name, wait=False)
        except OSError:
            continue
        if handle is None:
            continue
        with handle, contextlib.suppress(OSError):
            if not (root / found.group(1)).exists():
                (root / name).unlink()
                removed += 1
    return removed


def in_use(copy: Path) -> bool:
    """Whether a running process loaded ``copy`` (a folder of ``shared_root()``)."""
    try:
        pids = [name for name in os.listdir(copy / USERS) if name.isdigit()]
    except OSError:
        return False
    return any(os.path.exists(f"/proc/{pid}") for pid in pids)


def cpu_identity() -> str:
    """The processor's model and features: pre-packed weights are laid out for them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read().split("\n\n", 1)[0]
    except OSError:
        return platform.machine()
    wanted = ("vendor_id", "model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(line for line in first.splitlines() if line.split(":", 1)[0].strip() in wanted)


def copy_key(*digests: str) -> str:
    """The copy's folder name: the content of the model (and its external data files),
    onnxruntime's version and this CPU."""
    import onnxruntime as ort

    parts = (*digests, ort.__version__, cpu_identity())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _convert(model_path: Path, target: Path) -> None:
    """Write the copy of ``model_path`` into ``target`` (in a child process, see ``write_copy``).

    The child's memory (the model parsed, its weights packed on the heap) goes back to the system
    when it exits; done in the replica, the allocator would keep much of it.
    """
    scratch = scratch_folder(target.parent)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "inferd.runtimes.onnx_shared",
                str(model_path),
                str(scratch),
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode < 0:  # a signal: the OOM killer, a kill
            raise ChildProcessError(f"the converter was stopped by signal {-done.returncode}")
        if done.returncode == NOT_WRITTEN:  # the model loads: its copy could not be written
            raise ChildProcessError((done.stderr.strip().splitlines() or ["cannot write the copy"])[-1])
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise ValueError(lines[-1] if lines else f"exit status {done.returncode}")
        if not (scratch / WEIGHTS_NAME).is_file():
            raise ValueError(NO_WEIGHTS)
        for name in (MODEL_NAME, WEIGHTS_NAME):
            (scratch / name).chmod(0o444)  # replicas map these pages: nobody writes them
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def write_copy(model_path: Path, folder: Path) -> None:
    """Have onnxruntime write ``model_path`` optimized into ``folder``, weights in one data file.

    ``save_external_prepacked_constant_initializers`` puts the pre-packed MatMul weights in the
    data file too, so a replica maps them as well instead of packing a private copy. A weight-only
    quantized model that the plain load dequantizes on every run is written again with its
    weights dequantized (``_optimize``).
    """
    _optimize(model_path, folder, dequantize=False)
    if weight_only_quantized(model_path) and dequantized_each_run(model_path, folder / MODEL_NAME):
        for name in (MODEL_NAME, WEIGHTS_NAME):
            (folder / name).unlink(missing_ok=True)
        _optimize(model_path, folder, dequantize=True)
        (folder / UNPACKED_NAME).touch()


def _optimize(model_path: Path, folder: Path, dequantize: bool) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # the plain load reports errors; the copy stays on this machine
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(folder / MODEL_NAME)
    for key, value in (
        ("session.optimized_model_external_initializers_file_name", WEIGHTS_NAME),
        ("session.optimized_model_external_initializers_min_size_in_bytes", str(INLINE_BYTES)),
        *(
            # a weight-only quantized model: its weights dequantized once, into the shared file
            # (a plain load dequantizes them on every request, into each replica's own memory), and
            # multiplied unpacked, as the plain load multiplies them, so the answers stay the same
            (("session.disable_quant_qdq", "1"), ("session.disable_prepacking", "1"))
            if dequantize
            else (("session.save_external_prepacked_constant_initializers", "1"),)
        ),
    ):
        options.add_session_config_entry(key, value)
    with contextlib.ExitStack() as opened:  # a folder named in another encoding: its descriptor
        ort.InferenceSession(
            utf8_path(model_path, opened), sess_options=options, providers=["CPUExecutionProvider"]
        )


def populate(copy: Path) -> None:
    """Map in now every page of the copy's weights this process mapped (``copy``: its model file).

    They sit in the page cache anyway, once for all replicas; mapped lazily, a replica held only
    the pages its requests had read (an embedding table's rows), so its memory, and its first
    requests' time, depended on what it had been asked. Kernels before 5.14 leave them lazy.
    """
    weights = str((copy.parent / WEIGHTS_NAME).resolve())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            ranges = [line.split(maxsplit=5) for line in maps]
    except (AttributeError, OSError):
        return
    for fields in ranges:
        if len(fields) == 6 and fields[5].rstrip("\n") == weights:
            start, end = (int(part, 16) for part in fields[0].split("-"))
            libc.madvise(start, end - start, MADV_POPULATE_READ)


def unpacked(copy: Path) -> bool:
    """Whether replicas load the copy ``copy`` (its model file) with pre-packing off."""
    return (copy.parent / UNPACKED_NAME).is_file()


def end_with(replica: int) -> None:
    """Have the kernel kill this converter when ``replica`` (its parent) ends: a replica stopped
    while it loads leaves no converter writing a copy nobody will use."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != replica:  # it ended before that took effect
        sys.exit(f"the replica {replica} that started the converter is gone")


def main(model_path: Path, folder: Path) -> int:
    """The converter: 0 once the copy is written, ``NOT_WRITTEN`` when the model loads but its copy
    could not be written (a full disk, a file size limit), else the model's error."""
    import onnxruntime as ort

    try:
        write_copy(model_path, folder)
    except Exception as exc:
        try:
            with contextlib.ExitStack() as opened:
                ort.InferenceSession(utf8_path(model_path, opened), providers=["CPUExecutionProvider"])
        except Exception:
            raise exc from None
        print(exc, file=sys.stderr)
        return NOT_WRITTEN
    return 0


if __name__ == "__main__":
    end_with(int(sys.argv[3]))
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
