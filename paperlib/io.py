"""Result files (SPEC 9): atomic writes, a lock per run folder around read-modify-write, readers that
check each run file against its schema and name a damaged one.

Every result file goes to a temporary name beside it first, then is renamed onto it, so a reader
sees the old file or the new one, never half of one.  Temporary names carry the writer's process id
(``.<name>.<pid>.<random>.tmp``): a later run removes those whose process is gone.

``RUN_FILES`` holds one ``Schema`` per run-folder file (the columns and kinds of a parquet or CSV file, the
keys and types of a JSON file, and the stage that writes it).  ``read_parquet``, ``read_json`` and
``read_csv`` check a file against the schema of its name, so a file that is whole but of the wrong shape
(another program's parquet, a JSON list) is the same one error as a damaged one, with advice that works:
delete that file and rerun the stage that writes it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import PaperlibError
from .strategies import REFERENCE_SIGNALS, SIGNALS

LOCK_SUFFIX = ".paperlib.lock"
OWNER_SUFFIX = ".paperlib.owner"  # beside the lock: the holder's pid and command, for a waiting process
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
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; the folder gets what a plain mkdir would give
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


def owner_path(folder: str | os.PathLike) -> Path:
    """Beside the lock: who holds it (``pid <n>: <command>``), written by the holder, removed on release."""
    folder = Path(folder)
    return folder.parent / f".{folder.resolve().name}{OWNER_SUFFIX}"


def lock_holder(folder: str | os.PathLike) -> str:
    """'process <pid> (<command>)' from the owner file, or 'another process' when it is absent or unreadable."""
    try:
        text = owner_path(folder).read_text().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    pid, _, command = text.partition(": ")
    return f"process {pid} ({command})" if pid.isdigit() else "another process"


@contextmanager
def run_lock(folder: str | os.PathLike, timeout: float = LOCK_TIMEOUT_S):
    """Hold the run folder's lock (``.<folder name>.paperlib.lock`` beside it, the ``filelock`` package).

    Every read-modify-write of a result file runs under it, so two stages writing one folder keep each
    other's rows.  Re-entrant within a thread.  Taking it also cleans a killed run's leftovers.  The lock
    file sits beside the folder, not in it, so a run folder holds results only.  A lock held by another
    process is waited for (up to ``timeout`` seconds), saying on stderr who holds it; the holder's pid and
    command sit in ``.<folder name>.paperlib.owner`` while it holds the lock."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    where = str(lock_path(folder).resolve())
    lock = _LOCKS.get(where)
    if lock is None:  # one object per file: re-entrant per thread, exclusive across threads and processes
        lock = _LOCKS.setdefault(where, FileLock(where))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(
            f"paperlib: run folder {str(folder)!r} is locked by {lock_holder(folder)}; waiting for it "
            f"(up to {timeout:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise PaperlibError(
                f"run folder {str(folder)!r} stayed locked for {timeout:.0f}s by {lock_holder(folder)}; "
                f"wait for it to finish (or stop it), then rerun"
            ) from None
    try:
        if lock.lock_counter == 1:
            _write_owner(folder)
            clean_leftovers(folder)
        yield
    finally:
        if lock.lock_counter == 1:
            owner_path(folder).unlink(missing_ok=True)
        lock.release()


def _write_owner(folder: Path) -> None:
    argv0 = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    command = " ".join(["paperlib", *sys.argv[1:]]) if "paperlib" in str(sys.argv[:1]) else argv0
    try:
        owner_path(folder).write_text(f"{os.getpid()}: {command[:200]}, since {time.strftime('%H:%M:%S')}\n")
    except OSError:
        pass  # telling a waiting process who holds the lock is a courtesy, never a reason to fail


# ---------------------------------------------------------------- run-file schemas


@dataclass(frozen=True)
class Schema:
    """What one run file holds: ``fields`` (parquet/CSV column or JSON key -> kind: 'str', 'int', 'float',
    'number', 'bool', 'dict', 'list'), all required, more allowed; ``optional``: of that kind where present;
    ``stage``: the command that writes it."""

    fields: dict
    stage: str
    optional: dict = field(default_factory=dict)


_CURVES = {"strategy": "str", "seed": "int", "step": "int", "removed": "int", "kept": "str"}
_CURVES |= {"val_acc": "float", "test_acc": "float", "n_params": "number", "bytes": "number"}
_SIGNALS = {"strategy": "str", "seed": "int", "step": "int", "layer": "int"}
_SIGNALS |= {s: "float" for s in (*SIGNALS, *REFERENCE_SIGNALS)}
_FIT = {"dataset": "str", "strategy": "str", "step": "int", "layer": "int", "target": "float"}
_FIT_SUMMARY = {"protocol": "str", "key": "dict", "trained_on": "list", "features": "list", "lr": "dict", "rf": "dict"}
_DISTILL = {"strategy": "str", "depth": "int", "n_layers": "int", "kept": "str", "mode": "str"}  # dataset: optional
_DISTILL |= {"alpha": "float", "val_acc": "float", "test_acc": "float", "n_params": "number", "bytes": "number"}
_DISTILL |= {"ats": "float", "best_depth": "bool"}
RUN_FILES: dict[str, Schema] = {
    # JSON files: required what every reader needs; the rest typed where present (M0_SCHEMAS: a stage's M_0)
    "config.json": Schema(
        {},
        "finetune",
        {
            "model": "str",
            "dataset": "str",
            "data_fingerprint": "str",
            "preset": "dict",
            "device": "str",
            "precision": "str",
        },
    ),
    "metrics.json": Schema(
        {"test_acc": "number"},
        "finetune",
        {"val_acc": "number", "n_layers": "int", "run_config": "dict", "device": "str", "precision": "str"},
    ),
    "baseline.json": Schema({"test_acc": "number"}, "finetune", {"method": "str", "C": "number", "val_acc": "number"}),
    "baseline_predictions.parquet": Schema(
        {"index": "int", "label": "int", "pred": "int", "correct": "bool"}, "finetune"
    ),
    "curves.parquet": Schema(_CURVES, "prune"),
    "signals.parquet": Schema(_SIGNALS, "prune"),
    "predictions.parquet": Schema(
        {"strategy": "str", "seed": "int", "step": "int", "split": "str", "example": "int", "pred": "int"}, "prune"
    ),
    "labels.parquet": Schema({"split": "str", "example": "int", "label": "int"}, "prune"),
    "fusion_rows.parquet": Schema({**_FIT, **{s: "float" for s in SIGNALS}}, "fuse"),
    "fusion_within.json": Schema(_FIT_SUMMARY, "fuse"),
    "fusion_transfer.json": Schema(_FIT_SUMMARY, "fuse --protocol transfer"),
    "fusion_within_fit.parquet": Schema({**_FIT, "lr_prediction": "float", "rf_prediction": "float"}, "fuse"),
    "fusion_transfer_fit.parquet": Schema(
        {**_FIT, "lr_prediction": "float", "rf_prediction": "float"}, "fuse --protocol transfer"
    ),
    "fusion_weights.csv": Schema(
        {"dataset": "str", "protocol": "str", "signal": "str", "lr_coefficient": "float", "rf_importance": "float"},
        "fuse",
    ),
    "distill.parquet": Schema(_DISTILL, "distill", {"dataset": "str"}),
    "distill_predictions.parquet": Schema(
        {
            "strategy": "str",
            "depth": "int",
            "kept": "str",
            "mode": "str",
            "split": "str",
            "example": "int",
            "pred": "int",
        },
        "distill",
    ),
}
# what a stage needs of the M_0 it resumes from (``experiment.prepare``): the files as ``prepare`` writes them
M0_SCHEMAS = {
    "config.json": Schema(
        {"dataset": "str", "model": "str", "data_fingerprint": "str", "preset": "dict"},
        "finetune",
        RUN_FILES["config.json"].optional,
    ),
    "metrics.json": Schema(
        {"val_acc": "number", "test_acc": "number", "n_layers": "int"}, "finetune", RUN_FILES["metrics.json"].optional
    ),
    "baseline.json": Schema({"method": "str", "C": "number", "val_acc": "number", "test_acc": "number"}, "finetune"),
}
M0_FILES = ("metrics.json", "model")  # M_0 itself: every later file of the folder was computed from it
AUTO = "auto"  # schema argument of the readers: the schema of the file's name in RUN_FILES, if any


def schema_of(path: str | os.PathLike, schema=AUTO) -> Schema | None:
    """The schema a reader checks ``path`` against: ``schema`` itself, or (``AUTO``) the one its name has in
    ``RUN_FILES`` (none for other files, e.g. a model's own config.json inside ``model/``)."""
    path = Path(path)
    if schema != AUTO:
        return schema
    return RUN_FILES.get(path.name) if path.parent.name != "model" else None


def damaged_advice(path: str | os.PathLike) -> str:
    """What to do about a damaged run file: advice that leads back to a complete run folder."""
    path = Path(path)
    if path.name in M0_FILES or path.parent.name == "model":
        folder = path.parent.parent if path.parent.name == "model" else path.parent
        return (
            f"M_0 of {str(folder)!r} is damaged: delete that run folder and rerun `paperlib finetune` "
            f"(every later file in it was computed from that M_0)"
        )
    if path.name == "config.json":
        return (
            "delete that file and rerun `paperlib finetune` (M_0 is kept: the file is written again from the record "
            "in metrics.json)"
        )
    schema = RUN_FILES.get(path.name)
    if schema is not None:
        return (
            f"delete that file and rerun `paperlib {schema.stage}` (then the stages after it); finished results in "
            f"other files are kept"
        )
    return "delete that file and rerun the stage that writes it (finished results in other files are kept)"


def _damaged(path: Path, exc: Exception) -> PaperlibError:
    detail = " ".join(str(exc).split())[:200]
    return PaperlibError(f"{str(path)!r} is damaged ({type(exc).__name__}: {detail}); {damaged_advice(path)}")


_KINDS = {
    "str": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
    "int": pd.api.types.is_integer_dtype,
    "float": lambda s: pd.api.types.is_float_dtype(s) or pd.api.types.is_integer_dtype(s),
    "number": lambda s: pd.api.types.is_float_dtype(s) or pd.api.types.is_integer_dtype(s),
    "bool": pd.api.types.is_bool_dtype,
}
_JSON_TYPES = {
    "str": str,
    "int": int,
    "float": float,
    "number": (int, float),
    "bool": bool,
    "dict": dict,
    "list": list,
}


def _check_frame(df: pd.DataFrame, schema: Schema | None, columns=None) -> None:
    """Raise ValueError naming the first required column that is absent or of the wrong kind."""
    if schema is None:
        return
    wanted = {c: k for c, k in schema.fields.items() if columns is None or c in columns}
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"no column(s) {missing}; it has {list(df.columns)[:20]}")
    wanted |= {c: k for c, k in schema.optional.items() if c in df.columns}
    for column, kind in wanted.items():
        series = df[column]
        ok = _KINDS[kind](series) or (kind == "str" and series.empty)
        if not ok or (kind in ("int", "float", "number") and pd.api.types.is_bool_dtype(series)):
            raise ValueError(f"column {column!r} is {series.dtype}, not {kind}")


def _check_json(obj, schema: Schema | None) -> None:
    if schema is None:
        return
    if not isinstance(obj, dict):
        raise ValueError(f"a JSON {type(obj).__name__}, not an object with keys {sorted(schema.fields)}")
    missing = [k for k in schema.fields if k not in obj]
    if missing:
        raise ValueError(f"no key(s) {missing}")
    for key, kind in {**schema.fields, **{k: v for k, v in schema.optional.items() if k in obj}}.items():
        value = obj[key]
        if not isinstance(value, _JSON_TYPES[kind]) or (isinstance(value, bool) and kind in ("int", "float", "number")):
            raise ValueError(f"key {key!r} holds a {type(value).__name__}, not {kind}")


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, schema=AUTO):
    """A JSON file of a run folder, checked against its schema (``schema_of``); a damaged one, or one of
    the wrong shape, is one error naming it and what to do."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        _check_json(obj, schema_of(path, schema))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(path, exc) from None
    return obj


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None, schema=AUTO) -> pd.DataFrame:
    """A parquet file of a run folder, checked against its schema (``schema_of``: the required columns and
    their kinds, those in ``columns`` only when given); a damaged one, or one of the wrong shape, is one
    error naming it and what to do.

    Read through one open handle: a writer may replace the file (atomically) meanwhile, and a reader that
    opened it by name twice (size, then pages) could mix the old file with the new one."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            df = pd.read_parquet(handle, columns=columns)
        _check_frame(df, schema_of(path, schema), columns)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError for a truncated or foreign file
        raise _damaged(path, exc) from None
    return df


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
    folder = parts_dir(path)
    with run_lock(path.parent):
        clean_leftovers(folder)
        made = not folder.exists()
        try:
            write_parquet(df, folder / name)
        except BaseException:
            if made and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # a failed first part leaves the run folder as it was (no empty predictions/)
            raise


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


def read_csv(path: str | os.PathLike, required: tuple[str, ...] = (), schema=AUTO) -> pd.DataFrame:
    """A CSV file of a run folder (one this package wrote), checked against its schema (``schema_of``); a
    damaged one, or one without the ``required`` columns, is one error naming it."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
        _check_frame(df, schema_of(path, schema))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError / EmptyDataError are ValueErrors
        raise _damaged(path, exc) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _damaged(path, ValueError(f"no column(s) {missing}"))
    return df


def check_run_files(folder: str | os.PathLike, names=None, schemas: dict | None = None) -> None:
    """Before a stage works: read each run file of ``folder`` that is present (``names``, default every
    one in ``RUN_FILES``) and check it against its schema (``schemas[name]`` where given, e.g. ``M0_SCHEMAS``),
    so a damaged file is reported before any model is loaded or trained."""
    folder = Path(folder)
    for name in names if names is not None else RUN_FILES:
        path = folder / name
        if not path.is_file():
            continue
        schema = (schemas or {}).get(name, AUTO)
        if name.endswith(".json"):
            read_json(path, schema)
        elif name.endswith(".csv"):
            read_csv(path, schema=schema)
        else:
            read_parquet(path, schema=schema)


def check_writable(path: str | os.PathLike, what: str, option: str) -> None:
    """Before any work: ``path`` (a folder to write into, existing or to be made) can be made and written:
    the deepest part of it that exists is a folder, and this process may write there.  ``what`` names the
    folder and ``option`` the flag that chose it, for the error line."""
    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be made: {str(probe)!r} is a file"
        raise PaperlibError(f"{what} {str(path)!r} {where}, not a folder; pass another {option} or move that file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PaperlibError(
            f"{what} {str(path)!r} cannot be written: {str(probe)!r} is not writable for this user; "
            f"pass another {option} or make it writable"
        )


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
