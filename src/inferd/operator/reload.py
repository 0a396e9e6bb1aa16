"""``inferd serve --reload``: watch the project folder and roll edited APIs over to the new code.

An edit is mapped to the APIs it affects: an API's handler (or predictor) file or its model
rolls that API alone; the config file rolls the APIs whose entry changed (and creates or deletes
APIs); any other file (a module the handlers import, a data file they read, requirements.txt)
rolls every API. The engine's rolling update does the rest: new replicas start, take traffic
once ready, then the old ones finish their requests and stop, so no request fails.

An edit that does not load leaves the old replicas serving. Syntax errors are found here,
before any replica starts (``compile``, never an import: user code runs only in replicas);
other failures (an import error, a wrong handler signature) come back from the new replica.
Either way the error is printed with its file and line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

from inferd.config.load import load_project
from inferd.config.schema import ApiConfig, Project, is_remote
from inferd.engine.local import LocalEngine
from inferd.errors import InferdError
from inferd.storage import local_model_path

log = logging.getLogger("inferd")

# watchfiles waits this long for an editor's burst of writes (save, rename, touch) to settle.
DEBOUNCE_MS = 50
POLL_SECONDS = 0.05
# How often the watch wakes up without changes (a removed project folder is looked for as often).
WATCH_TIMEOUT_MS = 500
FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the project folder when it lies inside, else as it is."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def syntax_error(path: Path, root: Path) -> str | None:
    """``file:line: SyntaxError: ...`` when the Python file does not compile, else ``None``."""
    try:
        source = path.read_bytes()
    except OSError:
        return None  # deleted or unreadable: the replica will say what is missing
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{shown_path(path, root)}:{exc.lineno}" if exc.lineno else shown_path(path, root)
        code = (exc.text or "").strip()
        return f"{where}: {type(exc).__name__}: {exc.msg}" + (f"\n    {code}" if code else "")
    except ValueError as exc:  # e.g. null bytes in the source
        return f"{shown_path(path, root)}: {exc}"
    return None


def user_location(detail: str, root: Path) -> str | None:
    """The deepest ``file:line`` of a traceback that lies in the project folder."""
    found = None
    for match in FRAME.finditer(detail):
        path = Path(match["file"])
        if path.is_absolute() and (root == path or root in path.parents):
            found = f"{path.relative_to(root)}:{match['line']}"
    return found


# Log files (``serve.log``, rotated ``serve.log.1``) are never a handler's input, and a server
# started as ``inferd serve . --reload > serve.log`` writes one for every reload it makes:
# watched, each reload would cause the next, forever.
NOT_WATCHED = re.compile(r"\.log(\.\d+)?$")


def edited_paths(changes: set[tuple[watchfiles.Change, str]], root: Path) -> set[Path]:
    """The paths an edit touched, without an editor's scratch files (added, then removed), logs,
    or hidden files and folders of the project ``root`` (no version counts them: a handler may
    keep its own files there)."""
    added = {path for change, path in changes if change == watchfiles.Change.added}
    return {
        Path(path)
        for change, path in changes
        if (Path(path).exists() or (change == watchfiles.Change.deleted and path not in added))
        and not NOT_WATCHED.search(path)
        and not _hidden(Path(path), root)
    }


def _hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


def affected_apis(old: Project, new: Project, changed: Iterable[Path]) -> set[str]:
    """Names of the APIs of ``new`` that an edit of the ``changed`` paths affects."""
    affected: set[str] = set()
    before = {config.name: config.model_dump_json() for config in old.apis}
    for path in changed:
        path = Path(path)
        if path == new.config_file or path == old.config_file:
            affected.update(c.name for c in new.apis if before.get(c.name) != c.model_dump_json())
            continue
        owners = {config.name for config in new.apis if _owns(config, new.root, path)}
        affected.update(owners or (config.name for config in new.apis))
    return affected


def _owns(config: ApiConfig, root: Path, path: Path) -> bool:
    """Whether ``path`` is this API's own handler (or predictor) file or model."""
    handler = config.api.handler_file
    if handler is not None and (root / handler).resolve() == path:
        return True
    uri = config.api.model_uri
    if uri is None or is_remote(uri):
        return False
    model = local_model_path(uri, root)
    return path == model or model in path.parents


class Reloader:
    """Watches one project for ``inferd serve --reload`` and rolls its APIs on each edit."""

    def __init__(self, project: Project, engine: LocalEngine, say: Callable[[str], None]) -> None:
        self.project = project
        self.engine = engine
        self.say = say
        self._follows: set[asyncio.Task[None]] = set()
        # Edits seen while the project did not load (a syntax error, a broken config): rolled
        # out with the edit that makes it load again, not forgotten.
        self._pending: set[Path] = set()
        # Whether the last edit did not load: the edit that undoes it is said, even when it
        # leaves nothing to roll, or the error would stay the last word on the screen.
        self._broken = False
        # Whether the folder was removed and made again: all of it is the next watch's first edit.
        self._made_again = False

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set (runs on the serving process's event loop)."""
        root = self.project.root
        try:
            str(root).encode()
        except UnicodeEncodeError:  # watchfiles raised at its start, and no edit was ever seen
            self.say(
                f"inferd: --reload cannot watch {root}: its path is not UTF-8 text, which watchfiles "
                "needs; the APIs serve without reloading (rename the folder to reload edits)"
            )
            return
        # Said once the first step of the watch has run, i.e. once the folder is being watched.
        asyncio.get_running_loop().call_soon(self.say, f"inferd: watching {root} for changes")
        polling = False  # the kernel's file notifications (inotify) could not be had
        while not stop.is_set():
            try:
                await self._watch(root, stop, polling)
            except FileNotFoundError:  # removed again as the watch began
                pass
            except (OSError, RuntimeError) as exc:
                # No inotify instance or watch left for this user (a desktop's editors hold them,
                # a container's limit is low): watchfiles raised as the watch began (or after:
                # see _watch), the watch ended without a word, and no edit was reloaded. Polling
                # needs neither.
                if polling:
                    self.say(
                        f"inferd: --reload cannot watch {root} ({exc}); the APIs serve without reloading"
                    )
                    return
                polling = True
                self.say(
                    f"inferd: cannot watch {root} with file notifications ({exc}); watching it by polling"
                )
                continue
            if stop.is_set():
                return
            # The watch went with the folder (rm -rf, a fresh copy, a checkout that makes it
            # again); a new folder of that name is watched once it exists.
            self.say(f"inferd: {root} was removed; the APIs keep serving, and it is watched again once back")
            self._broken = True
            while not root.is_dir():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), WATCH_TIMEOUT_MS / 1000)
                if stop.is_set():
                    return
            self._made_again = True

    async def _watch(self, root: Path, stop: asyncio.Event, polling: bool) -> None:
        """Roll out the edits of ``root`` until it is removed or ``stop`` is set; by polling it
        where ``polling``, else with the kernel's file notifications."""
        try:
            await self._roll_edits(root, stop, polling)
        except ExceptionGroup as group:
            # A watch that fails once begun (polling a folder it cannot scan: a symlink loop, a
            # folder it may not read) fails inside watchfiles' task group, which wraps the error:
            # unwrapped, it is said as an error at the start is, not a watch that ends in silence.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], OSError | RuntimeError):
                raise group.exceptions[0] from None
            raise

    async def _roll_edits(self, root: Path, stop: asyncio.Event, polling: bool) -> None:
        async for changes in watchfiles.awatch(
            root,
            debounce=DEBOUNCE_MS,
            step=DEBOUNCE_MS,
            stop_event=stop,
            rust_timeout=WATCH_TIMEOUT_MS,
            yield_on_timeout=True,  # the first step of a watch comes at once, changes or not
            force_polling=True if polling else None,  # None: as WATCHFILES_FORCE_POLLING says
        ):
            if not root.is_dir():
                break
            changed = edited_paths(changes, root)
            if self._made_again:  # a folder made again, now watched: all of it is the edit
                self._made_again = False
                self.say(f"inferd: watching {root} again")
                changed.add(root)
            if changed:
                try:
                    await self.reload(changed)
                except Exception as exc:  # the watch goes on: the next edit may load
                    log.debug("reloading failed", exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}"
                    self.say(f"inferd: not reloaded ({reason}); the previous version keeps serving")

    async def reload(self, changed: set[Path]) -> None:
        """Roll the APIs that ``changed`` affects, unless the edit cannot load."""
        started = time.monotonic()
        root = self.project.root
        self._pending |= changed
        for path in sorted(changed):  # this edit's files only: a file still broken is said once
            if path.suffix == ".py" and path.is_file() and (error := syntax_error(path, root)):
                self.say(f"inferd: {error}")
                self.say("inferd: not reloaded; the previous version keeps serving")
                self._broken = True
                return
        try:
            # off the event loop the gateway answers requests on (a long config held them all)
            source = self.project.config_file if self.project.config_file.exists() else root
            project = await asyncio.to_thread(load_project, source)
        except InferdError as exc:
            self.say(f"inferd: {exc.message}")
            self.say("inferd: not reloaded; the previous version keeps serving")
            self._broken = True
            return
        changed, self._pending = self._pending, set()
        broken, self._broken = self._broken, False
        previous = self.project
        files = ", ".join(
            sorted(shown_path(path, root) if path != root else "the folder" for path in changed)
        )
        affected = affected_apis(self.project, project, changed)
        removed = sorted({c.name for c in self.project.apis} - {c.name for c in project.apis})
        splitters_changed = self.project.splitters != project.splitters
        renamed = project.deployment.name != self.project.deployment.name
        if renamed:  # apply leaves other deployments alone: the old name's APIs go once it is done
            removed = sorted(c.key for c in self.project.apis)
            affected = {c.name for c in project.apis}
        self.project = project
        if not affected and not removed and not splitters_changed:
            if broken:
                self._back(files)
            return
        serving = {name: self._serving(name) for name in affected}
        # apply deletes the APIs the config no longer has, and sets the splitters' weights
        try:
            results = await self.engine.apply(project, only=affected)
        except InferdError as exc:  # e.g. a file of the project that cannot be read
            self.say(f"inferd: {exc.message}")
            self.say("inferd: not reloaded; the previous version keeps serving")
            self.project, self._pending, self._broken = previous, self._pending | changed, True
            return
        if renamed:  # (deleted before the apply, a failed one left no API serving)
            for config in previous.apis:
                self.engine.delete(config.key)
            self.engine.set_splitters(previous.deployment.name, ())
        # An edit that brings an API back to files whose version failed to load is tried again
        # (a new version): that version's replicas may have read other files than these, saved
        # while they started, and said an error that these files do not have.
        failed = {
            name for name in affected if results.get(name) == "unchanged" and self._failing(project, name)
        }
        if failed:
            results |= await self.engine.apply(project, only=failed, refresh=f"reload-{time.monotonic()}")
        rolling = sorted(name for name in affected if results.get(name, "unchanged") != "unchanged")
        # An edit undoing one whose version failed to load (a failing import) brings back the
        # version the old replicas serve: nothing rolls ("reloaded classifier in 0.0 s" said so).
        back = {name for name in rolling if self._version(name) in serving[name]}
        rolling = [name for name in rolling if name not in back]
        # An API new to the config is started, not reloaded (it was said "reloading second ...").
        added = [name for name in rolling if results.get(name) == "created"]
        news = [f"removed {', '.join(removed)}"] if removed else []
        news += [f"adding {', '.join(added)}"] if added else []
        reloading = [name for name in rolling if name not in added]
        news += [f"reloading {', '.join(reloading)}"] if reloading else []
        if splitters_changed:
            news.append("traffic splitters updated")
        if news:
            self.say(f"inferd: {files} changed; {'; '.join(news)}")
        elif broken or back:
            self._back(files)
        for name in rolling:
            state = self.engine.apis.get(f"{project.deployment.name}/{name}")
            if state is None:
                continue
            follow = self._follow(name, state.version.id, started, "added" if name in added else "reloaded")
            task = asyncio.get_running_loop().create_task(follow)
            self._follows.add(task)
            task.add_done_callback(self._follows.discard)

    def _back(self, files: str) -> None:
        """Say that an edit undid one that did not load: the versions serving are the project's."""
        self.say(f"inferd: {files} changed; back to the version that is serving (nothing to reload)")

    def _serving(self, name: str) -> set[str]:
        """The versions of ``name`` that ready replicas answer with now."""
        state = self.engine.apis.get(f"{self.project.deployment.name}/{name}")
        if state is None:
            return set()
        return {r.version for r in state.replicas if r.ready and not r.retired}

    def _version(self, name: str) -> str | None:
        state = self.engine.apis.get(f"{self.project.deployment.name}/{name}")
        return None if state is None else state.version.id

    def _failing(self, project: Project, name: str) -> bool:
        state = self.engine.apis.get(f"{project.deployment.name}/{name}")
        return state is not None and state.version.error is not None

    async def _follow(self, name: str, version: str, started: float, done: str = "reloaded") -> None:
        """Say when ``version`` of ``name`` serves, or why it cannot (then the old one serves)."""
        key = f"{self.project.deployment.name}/{name}"
        while True:
            state = self.engine.apis.get(key)
            if state is None or state.version.id != version or state.deleting:
                return  # deleted, or a newer edit superseded this one
            current = [r for r in state.replicas if r.version == version and not r.retired]
            if sum(r.ready for r in current) >= max(1, state.desired) or (state.desired == 0 and not current):
                self.engine.reconcile()  # retire the old replicas now, not at the next tick
                self.say(f"inferd: {done} {name} in {time.monotonic() - started:.1f} s")
                return
            if state.version.error is not None:
                self._failed(name, state.version.error, state.version.detail, version)
                return
            await asyncio.sleep(POLL_SECONDS)

    def _failed(self, name: str, error: str, detail: str, version: str) -> None:
        root = self.project.root
        where = user_location(detail, root)
        reason = next((line for line in reversed(detail.splitlines()) if line.strip()), error)
        self.say(f"inferd: {where}: {reason.strip()}" if where else f"inferd: {error}")
        state = self.engine.apis.get(f"{self.project.deployment.name}/{name}")
        old = state is not None and any(r.ready and r.version != version for r in state.replicas)
        if old:
            self.say(f"inferd: {name} not reloaded; the previous version keeps serving")
        else:
            self.say(f"inferd: {name} failed to load")


def no_bytecode() -> None:
    """Replicas started from now on write no ``.pyc`` into the project.

    Python trusts a cached ``.pyc`` while the source's mtime (in whole seconds) and size are
    unchanged, so an edit of the same length within a second of a load would serve old code.
    """
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
