"""One exception type for every user-facing mistake; the CLI prints its message and exits 2.

``os_error_message`` turns the OSError family (disk full, permission denied, a file where a folder must
be, ...) into the same kind of line: what failed, where, and what to do about it."""

from __future__ import annotations

import errno


class PaperlibError(Exception):
    """Bad input or an unusable environment, with a message that says how to fix it."""


_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there (or write elsewhere: --out / --runs / --save) and rerun; "
    "finished results are kept",
    errno.EDQUOT: "the disk quota is used up: free space (or write elsewhere: --out / --runs / --save) and rerun",
    errno.EACCES: "make that location writable for you (or write elsewhere: --out / --runs / --save) and rerun",
    errno.EPERM: "make that location writable for you (or write elsewhere: --out / --runs / --save) and rerun",
    errno.EROFS: "that file system is read-only: write elsewhere (--out / --runs / --save) and rerun",
    errno.ENOTDIR: "a file stands where a folder is needed: move that file away or choose another path",
    errno.EISDIR: "a folder stands where a file is needed: move that folder away or choose another path",
    errno.ENOENT: "check the path (a folder may have been removed while the command ran) and rerun",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and rerun",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: what the system said, the path(s) it names, and what to do."""
    what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = f" ({' -> '.join(repr(str(p)) for p in paths)})" if paths else ""
    advice = _ADVICE.get(exc.errno, "check that location and rerun")
    return f"{what}{where}: {advice}"
