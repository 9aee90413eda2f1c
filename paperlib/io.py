"""Result files (SPEC 9): atomic writes, a lock per run folder around read-modify-write, readers that
name a damaged file.

Every result file goes to a temporary name beside it first, then is renamed onto it, so a reader
sees the old file or the new one, never half of one.  Temporary names carry the writer's process id
(``.<name>.<pid>.<random>.tmp``): a later run removes those whose process is gone."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import PaperlibError

LOCK_SUFFIX = ".paperlib.lock"
LOCK_TIMEOUT_S = 600.0  # a read-modify-write takes well under a second; waiting longer means a stuck writer
_LOCKS: dict = {}
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+(?:\.tmp|\.old)$")


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets what a plain open() would give
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    On Linux the new folder and the old one swap places in one atomic step, so ``path`` always exists.
    Elsewhere the old folder is renamed aside, the new one renamed in, then the old one deleted:
    ``path`` is missing only between those two renames, and a run killed right there leaves
    ``.<name>.<pid>.<random>.old``, which ``clean_leftovers`` renames back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".old", dir=path.parent))
            os.replace(path, old)  # onto the empty folder just made: a unique name, atomic
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove temporary files and folders that a killed run left in ``folder`` (their writer's process
    is gone); a ``.old`` folder whose target is missing is renamed back.  Returns what was handled."""
    folder = Path(folder)
    handled = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _LEFTOVER.match(entry.name)
        if not m or _alive(int(m["pid"])):
            continue
        target = folder / m["name"]
        if entry.name.endswith(".old") and not target.exists():
            os.replace(entry, target)  # killed between the two renames of atomic_dir: the old folder is whole
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        handled.append(entry.name)
    return handled


def lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.resolve().name}{LOCK_SUFFIX}"


@contextmanager
def run_lock(folder: str | os.PathLike, timeout: float = LOCK_TIMEOUT_S):
    """Hold the run folder's lock (``.<folder name>.paperlib.lock`` beside it, the ``filelock`` package).

    Every read-modify-write of a result file runs under it, so two stages writing one folder keep each
    other's rows.  Re-entrant within a thread.  Taking it also cleans a killed run's leftovers.  The lock
    file sits beside the folder, not in it, so a run folder holds results only."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    where = str(lock_path(folder).resolve())
    lock = _LOCKS.get(where)
    if lock is None:  # one object per file: re-entrant per thread, exclusive across threads and processes
        lock = _LOCKS.setdefault(where, FileLock(where))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise PaperlibError(
            f"run folder {str(folder)!r} stayed locked for {timeout:.0f}s by another paperlib process; "
            f"wait for it, or delete {str(lock_path(folder))!r} if no such process runs"
        ) from None
    try:
        if lock.lock_counter == 1:
            clean_leftovers(folder)
        yield
    finally:
        lock.release()


def _damaged(path: Path, exc: Exception) -> PaperlibError:
    detail = " ".join(str(exc).split())[:200]
    return PaperlibError(
        f"{str(path)!r} is damaged ({type(exc).__name__}: {detail}); delete that file and rerun "
        f"the stage that writes it (finished results in other files are kept)"
    )


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike):
    """A JSON file of a run folder; a damaged one is one error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(path, exc) from None


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file of a run folder; a damaged one is one error naming it.

    Read through one open handle: a writer may replace the file (atomically) meanwhile, and a reader that
    opened it by name twice (size, then pages) could mix the old file with the new one."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return pd.read_parquet(handle, columns=columns)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError for a truncated or foreign file
        raise _damaged(path, exc) from None


def update_parquet(path: str | os.PathLike, new: pd.DataFrame, key: list[str], tidy=None) -> pd.DataFrame:
    """Under the folder's lock: read ``path``, drop its rows whose ``key`` values appear in ``new``, add
    ``new``, ``tidy`` the result (types, order) and write it atomically.  Returns what was written."""
    path = Path(path)
    with run_lock(path.parent):
        old = read_parquet(path) if path.is_file() else new.iloc[:0]
        if len(old) and len(new):
            ours = set(new[key].itertuples(index=False, name=None))
            old = old[[k not in ours for k in old[key].itertuples(index=False, name=None)]]
        out = pd.concat([f for f in (old, new) if len(f)] or [new], ignore_index=True)
        out = tidy(out) if tidy is not None else out
        write_parquet(out, path)
    return out


def parts_dir(path: str | os.PathLike) -> Path:
    """The folder of part files beside a parquet table: ``predictions.parquet`` -> ``predictions/``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet"))


def part_name(*values) -> str:
    """A file name for one part, unique per ``values``: readable slug + 8 hex digits of their hash."""
    text = "\x1f".join(str(v) for v in values)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(v) for v in values)).strip("_.")[:80]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.parquet"


def write_part(path: str | os.PathLike, name: str, df: pd.DataFrame) -> None:
    """Write one part of the table ``path`` (``parts_dir(path)/name``) atomically, under the folder's lock.

    Append-only: a stage adds a part per finished job instead of rewriting the whole table, so a job costs
    the size of its own rows.  A part replaces the table's rows that share its key (``read_parted``)."""
    path = Path(path)
    with run_lock(path.parent):
        clean_leftovers(parts_dir(path))
        write_parquet(df, parts_dir(path) / name)


def read_parted(path: str | os.PathLike, key: list[str], columns: list[str] | None = None) -> pd.DataFrame | None:
    """The table ``path`` with its parts (``parts_dir(path)/*.parquet``): the rows of every part, and the
    file's rows whose ``key`` values no part holds.  None when neither the file nor a part exists.

    Needs no lock: the parts are listed and read before the file, and ``fold_parts`` writes the file before it
    deletes the parts, so a fold meanwhile at worst gives a row twice (dropped by the key rule) or makes a
    listed part vanish (the read is then redone under the lock)."""
    path = Path(path)
    wanted = None if columns is None else list(dict.fromkeys([*key, *columns]))
    try:
        return _read_parted(path, key, wanted, columns)
    except FileNotFoundError:  # a part folded away between listing and reading
        with run_lock(path.parent):
            return _read_parted(path, key, wanted, columns)


def _read_parted(path: Path, key: list[str], wanted, columns) -> pd.DataFrame | None:
    parts = [read_parquet(p, wanted) for p in sorted(parts_dir(path).glob("*.parquet"))]
    base = read_parquet(path, wanted) if path.is_file() else None
    if base is None and not parts:
        return None
    if base is not None and parts and len(base):
        ours = pd.concat([p[key] for p in parts], ignore_index=True).drop_duplicates()
        base = base[~pd.MultiIndex.from_frame(base[key]).isin(pd.MultiIndex.from_frame(ours))]
    frames = [f for f in ([base] if base is not None else []) + parts if len(f)]
    out = pd.concat(frames, ignore_index=True) if frames else (base if base is not None else parts[0])
    return out if columns is None else out[columns]


def fold_parts(path: str | os.PathLike, key: list[str], tidy=None) -> bool:
    """Under the folder's lock: fold the parts of ``path`` into the file (one atomic write of the merged,
    ``tidy``-ed table), then delete them.  Returns whether there was anything to fold."""
    path = Path(path)
    folder = parts_dir(path)
    with run_lock(path.parent):
        parts = sorted(folder.glob("*.parquet"))
        if not parts:
            return False
        out = read_parted(path, key)
        write_parquet(tidy(out) if tidy is not None else out, path)
        for p in parts:  # after the file: a reader meanwhile sees the rows twice at worst, never not at all
            p.unlink()
        clean_leftovers(folder)
        with contextlib.suppress(OSError):
            folder.rmdir()
    return True


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame as parquet atomically (no index; byte-stable for equal frames)."""
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)


def read_csv(path: str | os.PathLike, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV file of a run folder (one this package wrote); a damaged one, or one without the ``required``
    columns, is one error naming it."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError / EmptyDataError are ValueErrors
        raise _damaged(path, exc) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _damaged(path, ValueError(f"no column(s) {missing}"))
    return df


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
