"""Live progress of work that runs out of sight: a notebook's long loops inside a papermill kernel.

A saved notebook must carry no progress bars, so inside ``paperlib reproduce`` the kernels' bars are
off.  When ``$PAPERLIB_PROGRESS_FILE`` names a file, every bar made by ``paperlib.train.tqdm``
reports its state there instead: one JSON object ``{"bars": [{"desc", "postfix", "n", "total"}, ...]}`` with
the open bars outermost first, rewritten atomically at most every ``INTERVAL`` seconds.  The runner
(``Follower``) reads that file and draws one tqdm bar in the terminal: the outermost loop's steps
done of total with elapsed time and ETA, the inner loops as a postfix."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tqdm.std import tqdm as std_tqdm

from .config import ENV, runtime

PROGRESS_ENV = ENV["progress_file"]
INTERVAL = 0.5  # seconds between two writes of the progress file

_open: list[ReportingBar] = []  # the bars open in this process, outermost first
_last_write = 0.0


def reporting() -> bool:
    """True when this process reports its bars to a progress file."""
    return runtime().progress_file is not None


def _write(force: bool = False) -> None:
    global _last_write
    now = time.monotonic()
    path = runtime().progress_file
    if not path or (not force and now - _last_write < INTERVAL):
        return
    _last_write = now
    state = {
        "bars": [
            {"desc": b.desc.rstrip(": "), "postfix": str(b.postfix or ""), "n": int(b.n), "total": b.total}
            for b in _open
        ]
    }
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except OSError:  # progress is a courtesy: never fail the work over it
        pass


class ReportingBar(std_tqdm):
    """A tqdm bar that draws nothing and reports its state to ``$PAPERLIB_PROGRESS_FILE``."""

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = False
        kwargs["file"] = open(os.devnull, "w")
        kwargs.setdefault("mininterval", INTERVAL)
        self._sink = kwargs["file"]
        super().__init__(*args, **kwargs)
        _open.append(self)
        _write(force=True)

    def display(self, msg=None, pos=None):
        _write()
        return True

    def close(self):
        try:
            if self in _open:
                _open.remove(self)
                _write(force=not _open)
        except TypeError:  # interpreter shutdown: the module's globals are gone
            return
        super().close()
        self._sink.close()


class Follower:
    """Follow a progress file in a background thread and mirror it on one terminal bar.

    ``label`` prefixes the bar (e.g. ``[bbc_news] 05``).  A new outermost loop restarts the bar, so
    its elapsed time and ETA are the loop's.  ``with Follower(path, label):`` starts and stops it."""

    def __init__(self, path: Path, label: str, enabled: bool = True, poll: float = 0.3):
        self.path, self.label, self.enabled, self.poll = Path(path), label, enabled, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._bar = None
        self._key = None

    def __enter__(self):
        self.path.unlink(missing_ok=True)
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()
        self.path.unlink(missing_ok=True)

    def _read(self):
        try:
            return json.loads(self.path.read_text()).get("bars") or []
        except (OSError, ValueError):
            return None

    def _run(self):
        while not self._stop.wait(self.poll):
            bars = self._read()
            if bars:
                self.update(bars)

    def update(self, bars: list[dict]) -> None:
        """Show ``bars`` (outermost first) on the terminal bar."""
        outer = bars[0]
        key = (outer["desc"], outer["total"])
        if self._bar is None:
            self._bar = std_tqdm(
                total=outer["total"],
                desc=f"{self.label} {outer['desc']}",
                leave=False,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        elif key != self._key or outer["n"] < self._bar.n:
            self._bar.reset(total=outer["total"])
            self._bar.set_description(f"{self.label} {outer['desc']}", refresh=False)
        self._key = key
        inner = [f"{b['desc']} {b['n']}/{b['total'] if b['total'] is not None else '?'}" for b in bars[1:]]
        self._bar.set_postfix_str(", ".join(filter(None, [outer.get("postfix", ""), *inner])), refresh=False)
        self._bar.update(max(0, outer["n"] - self._bar.n))
        self._bar.refresh()
