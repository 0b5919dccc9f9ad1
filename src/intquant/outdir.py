"""Output folders and files that are safe by construction; every writer of intquant uses them.

The CLI's ``quantize``, ``export-c``, ``report``, ``analyze --json`` and ``run --output`` and the
library's ``QuantizedModel.export_c`` write through :func:`staged_dir` / :func:`staged_file`:

- Output is written into a temporary sibling (``.<name>.intquant-partial-<pid>-*``) and renamed
  into place only when complete: an error, Ctrl-C or SIGTERM leaves the destination as it was.
- A folder intquant writes holds the marker file ``.intquant-output``. An existing folder is
  replaced only if it holds the marker *and* the caller asked for it (``--force`` /
  ``overwrite=True``); a non-empty folder without the marker, the working folder and the folders
  above it are refused: intquant never deletes anything it did not create.
- A lock file ``.<name>.intquant-lock`` next to the destination, created with O_EXCL and held with
  ``flock`` while writing, makes a second concurrent writer fail at once with one line.
- Leftovers of killed runs (partial or old folders, locks) whose process is gone are removed by
  the next run writing the same destination.
- Folders and files get what the user's umask gives (``mkdtemp``/``mkstemp`` alone give
  0700/0600).

Every failure is an :class:`OutputError`, a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: locks fall back to the owner's PID alone
    fcntl = None  # type: ignore[assignment]

MARKER = ".intquant-output"
STALE_EMPTY_LOCK_SECONDS = 10.0  # a lock file still empty after this long lost its creator
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class OutputError(ValueError):
    """An output location intquant must not or cannot write; the message is one line."""


class Terminated(BaseException):
    """SIGTERM turned into an exception (like KeyboardInterrupt for SIGINT), so that cleanup runs.

    A BaseException, so that ``except Exception`` blocks in libraries cannot swallow it.
    """


# ----------------------------------------------------------------------------------------------
# Signals: exceptions for the CLI, remembered even when some library code swallows them
# ----------------------------------------------------------------------------------------------

_received: list[int] = []


def _raise_for(signum: int, _frame: object = None) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"terminated by signal {signum}")


@contextmanager
def signals_as_exceptions(*, then_ignore: bool = False) -> Iterator[None]:
    """SIGINT → KeyboardInterrupt, SIGTERM → :class:`Terminated` while the block runs.

    Each signal is also recorded (:func:`signalled`): a KeyboardInterrupt raised inside a
    ``__del__`` or a callback is swallowed by Python, but a commit still sees the signal and
    refuses to put the output in place.

    ``then_ignore``: afterwards ignore both signals instead of restoring the previous handlers.
    The CLI's process entry point uses it: once its exit code is settled, a signal landing while
    Python shuts down must not kill it with Python's default handler (status -2, a traceback).
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and receives KeyboardInterrupt)
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, _raise_for)
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_about_signals(hook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for s, h in previous.items():
            if then_ignore:
                signal.signal(s, signal.SIG_IGN)
            elif h is not None:
                signal.signal(s, h)


def _quiet_about_signals(hook: Callable) -> Callable:
    """An unraisable-exception hook that drops the signal exceptions Python swallowed.

    Python prints "Exception ignored in ... Traceback" for them; the signal is recorded anyway
    and ends the run with its exit code, so the traceback would only alarm the user.
    """

    def quiet(unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
            hook(unraisable)

    return quiet


def signalled() -> int | None:
    """The first SIGINT/SIGTERM received under :func:`signals_as_exceptions`, if any."""
    return _received[0] if _received else None


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def _raise_if_signalled() -> None:
    if _received:
        _raise_for(_received[0])


@contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while a few renames run; deliver them afterwards to the old handler.

    Python handlers run in the main thread only, whichever thread the kernel picks, so replacing
    the handlers (not masking the signal) is what works with torch's worker threads around.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous = {s: h for s, h in previous.items() if h is not None}
    for s in previous:
        signal.signal(s, lambda n, _f: caught.append(n))
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if caught:
        signal.raise_signal(caught[0])


# ----------------------------------------------------------------------------------------------
# Names, permissions, processes
# ----------------------------------------------------------------------------------------------


def normalize(path: str | os.PathLike) -> Path:
    """Absolute, with ``.`` and ``..`` resolved textually (symlinks kept: they are checked)."""
    return Path(os.path.abspath(os.fspath(path)))


def _tag(dest: Path) -> str:
    """The name used for the sibling lock/partial entries: short enough for any file system."""
    if len(dest.name) <= 100:
        return dest.name
    return dest.name[:80] + "-" + hashlib.sha256(dest.name.encode()).hexdigest()[:12]


def _lock_path(dest: Path) -> Path:
    return dest.parent / f".{_tag(dest)}.intquant-lock"


def _sibling_prefix(dest: Path, kind: str) -> str:
    return f".{_tag(dest)}.intquant-{kind}-{os.getpid()}-"


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """chmod a file/folder made by mkstemp/mkdtemp (0600/0700) to what open()/mkdir() give."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (unknown counts as alive)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _cannot_write(dest: Path, e: OSError) -> OutputError:
    reason = e.strerror or type(e).__name__
    where = f" ({e.filename})" if e.filename and os.fspath(e.filename) != str(dest) else ""
    hint = "; choose a writable location" if e.errno in (errno.EACCES, errno.EPERM,
                                                          errno.EROFS) else ""
    return OutputError(f"cannot write {dest}: {reason}{where}{hint}")


# ----------------------------------------------------------------------------------------------
# Checks (cheap; the CLI runs them before any expensive work)
# ----------------------------------------------------------------------------------------------


def _writable(folder: Path) -> bool:
    """Whether this process may create entries in ``folder`` (effective ids, read-only mounts)."""
    return os.access(folder, os.W_OK | os.X_OK,
                     effective_ids=os.access in os.supports_effective_ids)


def _check_parent_chain(dest: Path) -> None:
    """The nearest existing ancestor must be a writable folder (not a file, not read-only)."""
    p = dest.parent
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise OutputError(f"cannot write {dest}: {p} is a file, not a folder")
    if not _writable(p):
        raise OutputError(f"cannot write {dest}: {p} is not writable (read-only location or no "
                          f"permission); choose a writable location")


def _check_not_working_folder(dest: Path) -> None:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return
    real = dest.resolve()
    if real == cwd or real in cwd.parents:
        raise OutputError(f"{dest} is the working folder or contains it; intquant writes a new "
                          f"folder (and never replaces this one): give a new name such as "
                          f"{dest / 'out'}")


def check_dir(dest: str | os.PathLike, *, overwrite: bool = False, update: bool = False,
              flag: str = "overwrite=True") -> str:
    """Whether intquant may write folder ``dest``: 'new', 'empty' or 'ours'; else OutputError.

    ``update``: only some entries of an intquant folder will be replaced (``report`` into a
    quantize folder), which needs no ``overwrite``. ``flag`` is how the caller's user asks for
    replacing (``--force`` in the CLI).
    """
    dest = normalize(dest)
    if dest == dest.parent:
        raise OutputError(f"{dest} is the root folder; give a new folder name")
    _check_not_working_folder(dest)
    _check_parent_chain(dest)
    if os.path.islink(dest):
        raise OutputError(f"{dest} is a symbolic link; give the folder's real path or a new name")
    if not os.path.lexists(dest):
        return "new"
    if not dest.is_dir():
        raise OutputError(f"{dest} is a file; give a folder name that is new (or was written by "
                          f"intquant)")
    try:
        empty = next(os.scandir(dest), None) is None
    except OSError as e:
        raise _cannot_write(dest, e) from None
    if empty:
        return "empty"
    if not (dest / MARKER).is_file():
        raise OutputError(f"{dest} already exists and holds files intquant did not write (no "
                          f"{MARKER} marker); intquant never deletes such a folder: choose a new "
                          f"name or empty it yourself")
    if not (update or overwrite):
        raise OutputError(f"{dest} already exists (written by intquant earlier); pass {flag} to "
                          f"replace it, or choose another name")
    if not _writable(dest):
        raise OutputError(f"cannot write {dest}: not writable (read-only location or no "
                          f"permission); choose a writable location")
    return "ours"


def check_file(dest: str | os.PathLike) -> Path:
    """Whether intquant may write file ``dest`` (an existing file is replaced); else OutputError."""
    dest = normalize(dest)
    if dest.is_dir():
        raise OutputError(f"{dest} is a folder; give a file name")
    _check_parent_chain(dest)
    return dest


# ----------------------------------------------------------------------------------------------
# The lock
# ----------------------------------------------------------------------------------------------


def _owner(path: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, None while it is still empty or unreadable."""
    try:
        text = path.read_text(encoding="utf-8").split()
        return int(text[0]), text[1]
    except (OSError, ValueError, IndexError):
        return None


def _remove_if_stale(path: Path) -> bool:
    """Remove the lock file if its writer is gone; True when the caller should try again."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # held: its writer is alive
        owner = _owner(path)
        if owner is None:  # empty: created this instant, or its creator died right then
            if time.time() - os.fstat(fd).st_mtime < STALE_EMPTY_LOCK_SECONDS:
                return False
        elif fcntl is None and (owner[1] != socket.gethostname() or _alive(owner[0])):
            return False
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return True  # replaced meanwhile: look again
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    finally:
        os.close(fd)


def _acquire(dest: Path) -> int:
    path = _lock_path(dest)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if _remove_if_stale(path):
                continue
            owner = _owner(path)
            who = f" (pid {owner[0]} on {owner[1]})" if owner else ""
            raise OutputError(f"{dest} is being written by another intquant process{who}; wait "
                              f"for it to finish or choose another name") from None
        except OSError as e:
            raise _cannot_write(dest, e) from None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # only a stale check can hold it, for an instant
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return fd
    raise OutputError(f"{dest} is being written by another intquant process; try again")


@contextmanager
def _locked(dest: Path) -> Iterator[None]:
    fd = _acquire(dest)
    try:
        yield
    finally:
        with _signals_deferred():
            try:
                os.unlink(_lock_path(dest))  # unlink before close: see _remove_if_stale
            except FileNotFoundError:
                pass
            os.close(fd)


# ----------------------------------------------------------------------------------------------
# Leftovers of killed runs
# ----------------------------------------------------------------------------------------------


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def remove_stale(dest: str | os.PathLike) -> list[Path]:
    """Remove partial/old siblings of ``dest`` left by intquant runs whose process is gone."""
    dest = normalize(dest)
    removed = []
    head = f".{_tag(dest)}.intquant-"
    try:
        entries = [e.name for e in os.scandir(dest.parent) if e.name.startswith(head)]
    except OSError:
        return removed
    for name in entries:
        kind, _, rest = name[len(head):].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)):
            _remove(dest.parent / name)
            removed.append(dest.parent / name)
    return removed


# ----------------------------------------------------------------------------------------------
# Commit: renames, all or nothing
# ----------------------------------------------------------------------------------------------


def _rename_all(moves: list[tuple[Path, Path]], then_remove: list[Path], dest: Path) -> None:
    """Apply the renames; on an error or a signal during them undo the done ones in reverse.

    A signal that arrives while the leftovers are removed (after the output is complete and in
    place) is still delivered once this returns.
    """
    with _signals_deferred() as caught:
        _raise_if_signalled()  # an interrupt swallowed by library code still stops the commit
        done: list[tuple[Path, Path]] = []
        try:
            for src, dst in moves:
                if caught:
                    break
                os.rename(src, dst)
                done.append((src, dst))
        except OSError as e:
            _undo(done)
            raise _cannot_write(dest, e) from None
        if caught:
            _undo(done)
            return  # the signal is delivered when the deferral ends
        for p in then_remove:
            _remove(p)


def _undo(done: list[tuple[Path, Path]]) -> None:
    for src, dst in reversed(done):
        os.rename(dst, src)


def _entry_moves(tmp: Path, dest: Path, old: Path, replace: bool) -> list[tuple[Path, Path]]:
    """Move each entry of ``tmp`` into ``dest``; same-named entries go to ``old`` first if
    ``replace`` (entries of an intquant folder), else they are someone else's: refuse."""
    moves = []
    for entry in sorted(os.listdir(tmp)):
        if os.path.lexists(dest / entry):
            if not replace:
                raise OutputError(f"{dest / entry} appeared while intquant was writing {dest}; "
                                  f"nothing was changed: run again")
            moves.append((dest / entry, old / entry))
        moves.append((tmp / entry, dest / entry))
    return moves


def _make_parents(folder: Path, dest: Path) -> list[Path]:
    """Create the missing folders above ``dest``; return them (outermost first) for cleanup."""
    missing = []
    p = folder
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    created = []
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
    except OSError as e:
        _remove_empty(created)
        raise _cannot_write(dest, e) from None
    return created


def _remove_empty(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass


def _write_marker(folder: Path) -> None:
    from . import __version__

    (folder / MARKER).write_text(json.dumps({"written_by": "intquant", "version": __version__})
                                 + "\n")


@contextmanager
def _cleanup_on_failure(created: list[Path], *partials: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with _signals_deferred():
            for p in partials:
                _remove(p)
            _remove_empty(created)
        raise


@contextmanager
def staged_dir(dest: str | os.PathLike, *, overwrite: bool = False, update: bool = False,
               flag: str = "overwrite=True") -> Iterator[Path]:
    """Yield an empty folder to write; on success it becomes ``dest`` (see the module doc).

    ``overwrite``: replace an existing intquant folder. ``update``: the entries written replace
    same-named entries of an existing intquant folder, the others stay (report into a quantize
    folder). Nothing is left behind on failure, Ctrl-C or SIGTERM.
    """
    dest = normalize(dest)
    check_dir(dest, overwrite=overwrite, update=update, flag=flag)
    created = _make_parents(dest.parent, dest)
    with _cleanup_on_failure(created):
        with _locked(dest):
            remove_stale(dest)
            state = check_dir(dest, overwrite=overwrite, update=update, flag=flag)
            try:
                tmp = Path(tempfile.mkdtemp(prefix=_sibling_prefix(dest, "partial"),
                                            dir=dest.parent))
            except OSError as e:
                raise _cannot_write(dest, e) from None
            old = dest.parent / (_sibling_prefix(dest, "old") + tmp.name.rsplit("-", 1)[1])
            with _cleanup_on_failure([], tmp):
                follow_umask(tmp)
                _write_marker(tmp)
                yield tmp
                if state == "new":
                    _rename_all([(tmp, dest)], [], dest)
                elif state == "ours" and not update:
                    _rename_all([(dest, old), (tmp, dest)], [old], dest)
                else:  # an empty folder, or entries of an intquant folder: keep the folder
                    old.mkdir()
                    with _cleanup_on_failure([], old):
                        moves = _entry_moves(tmp, dest, old, replace=state == "ours")
                        _rename_all(moves, [old, tmp], dest)


@contextmanager
def staged_file(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same suffix) to write; on success it replaces file ``dest``."""
    dest = check_file(dest)
    created = _make_parents(dest.parent, dest)
    with _cleanup_on_failure(created):
        remove_stale(dest)
        try:
            fd, name = tempfile.mkstemp(prefix=_sibling_prefix(dest, "partial"),
                                        suffix=dest.suffix, dir=dest.parent)
        except OSError as e:
            raise _cannot_write(dest, e) from None
        os.close(fd)
        tmp = Path(name)
        with _cleanup_on_failure([], tmp):
            follow_umask(tmp)
            yield tmp
            _rename_all([(tmp, dest)], [], dest)


def write_file(dest: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` then rename to ``dest``: the one-call form of :func:`staged_file`."""
    with staged_file(dest) as tmp:
        write(tmp)
    return normalize(dest)
