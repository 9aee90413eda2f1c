"""Live progress: bars inside a kernel report to a file; the runner's bar follows it."""

from __future__ import annotations

import json

from paperlib import progress
from paperlib.train import tqdm


def _state(path):
    return json.loads(path.read_text())["bars"]


def test_bars_report_to_the_progress_file_even_when_disabled(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # every update written
    outer = tqdm(range(3), desc="prune", disable=True)  # a notebook passes progress=False: reported all the same
    assert isinstance(outer, progress.ReportingBar)
    it = iter(outer)
    next(it)
    outer.set_postfix_str("Oracle")
    inner = tqdm(total=4, desc="eval")
    inner.update(3)
    bars = _state(path)
    assert [(b["desc"], b["n"], b["total"]) for b in bars] == [("prune", 0, 3), ("eval", 3, 4)]
    assert bars[0]["postfix"] == "Oracle"
    inner.close()
    next(it)
    assert [(b["desc"], b["n"]) for b in _state(path)] == [("prune", 1)]
    list(it)
    outer.close()
    assert _state(path) == []


def test_without_the_variable_bars_are_ordinary_and_quiet(monkeypatch, capsys):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setenv("PAPERLIB_QUIET", "1")
    bar = tqdm(range(2), desc="x")
    assert not isinstance(bar, progress.ReportingBar) and bar.disable
    list(bar)
    assert capsys.readouterr().err == ""


def test_follower_mirrors_the_outer_loop_and_restarts_on_a_new_one(tmp_path):
    follower = progress.Follower(tmp_path / "p.json", "[bbc_news] 05", enabled=False)
    with follower:
        follower.update(
            [
                {"desc": "distill bbc_news", "postfix": "kd k=1", "n": 2, "total": 6},
                {"desc": "kd k=1", "postfix": "", "n": 10, "total": 50},
            ]
        )
        bar = follower._bar
        assert (bar.n, bar.total) == (2, 6)
        assert bar.desc.startswith("[bbc_news] 05 distill bbc_news")
        assert "kd k=1" in bar.postfix and "10/50" in bar.postfix
        follower.update([{"desc": "eval", "postfix": "", "n": 1, "total": 3}])  # another loop: counted afresh
        assert (bar.n, bar.total) == (1, 3) and "eval" in bar.desc
