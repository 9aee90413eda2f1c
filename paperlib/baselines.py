"""The classical reference (SPEC 7): TF-IDF over word 1-2 grams + logistic regression, on the run's own splits.

It is the floor a pruned (or distilled) transformer should clear: seconds per dataset on a CPU.  Features:
``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200_000)`` fitted on train;
classifier: multinomial ``LogisticRegression`` with the inverse regularisation C chosen on the validation split
from ``C_GRID`` (the test split is never used for a choice), then scored once on test.  Written to the run folder
as ``baseline.json`` (accuracies, C, seconds) and ``baseline_predictions.parquet`` (one row per test example, in
the order of the run's test split: ``index``, ``label``, ``pred``, ``correct``) for paired comparisons.

Speed (issue 23; neither changes a number): the fits run with one BLAS thread (``blas_threads``; L-BFGS-B's
vectors of n_features x n_classes are too short for threads to pay, and a multi-threaded OpenBLAS made a fit up
to 7x slower on a loaded machine), and when fine-tuning runs on a GPU, ``start_beside`` computes the reference in
a child process while M_0 trains, fitting the C values side by side, so its seconds leave the critical path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, write_json, write_parquet

C_GRID = (1.0, 10.0, 100.0)
BLAS_THREADS = 1  # threads of the BLAS under the LR fits; None: the library's default (the plain setting)
CHILD_JOBS = len(C_GRID)  # beside training: the C values fitted side by side (newsgroup: 120 s -> the longest fit)
NAME = "TF-IDF+LR"
JSON_NAME, PREDICTIONS_NAME = "baseline.json", "baseline_predictions.parquet"


def tfidf_lr(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    c_grid=C_GRID,
    seed: int = 0,
    blas_threads: int | None = BLAS_THREADS,
    n_jobs: int = 1,
) -> tuple[dict, np.ndarray]:
    """Fit TF-IDF + LR on ``train``, pick C by validation accuracy (ties: smaller C), score on ``test``.

    ``n_jobs`` > 1 fits the C values in that many processes (the same fits: the same numbers).
    Returns ({'val_acc', 'test_acc', 'C', 'seconds', 'n_features'}, test predictions)."""
    from joblib import Parallel, delayed
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200_000)
    x_train = vec.fit_transform(train["text"].astype(str))
    x_val, x_test = vec.transform(val["text"].astype(str)), vec.transform(test["text"].astype(str))
    y_train, y_val, y_test = (d["label"].to_numpy() for d in (train, val, test))
    fits = Parallel(n_jobs=min(n_jobs, len(c_grid)))(
        delayed(_fit)(x_train, y_train, c, seed, blas_threads) for c in c_grid
    )
    best = None
    for c, clf in zip(c_grid, fits):
        acc = float((clf.predict(x_val) == y_val).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    val_acc, c, clf = best
    pred = clf.predict(x_test)
    info = {
        "method": NAME,
        "val_acc": val_acc,
        "test_acc": float((pred == y_test).mean()),
        "C": c,
        "c_grid": list(c_grid),
        "n_features": int(x_train.shape[1]),
        "seconds": round(time.perf_counter() - t0, 2),
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
    }
    return info, pred


def baseline_run(run, force: bool = False, beside: Beside | None = None) -> dict:
    """Compute (or read back) the classical reference of a run folder; writes the two files beside M_0.
    ``beside``: the computation ``start_beside`` started for these splits (its result is taken instead)."""
    path = Path(run.folder) / JSON_NAME
    if path.is_file() and (Path(run.folder) / PREDICTIONS_NAME).is_file() and not force:  # both files, or redo
        if beside is not None:
            beside.close()
        return read_json(path)
    splits = run.splits
    if beside is not None:
        info, pred = beside.result()
    else:
        info, pred = tfidf_lr(splits.train, splits.val, splits.test, seed=run.preset.seed)
    labels = splits.test["label"].to_numpy()
    write_parquet(
        pd.DataFrame({"index": np.arange(len(labels)), "label": labels, "pred": pred, "correct": pred == labels}),
        Path(run.folder) / PREDICTIONS_NAME,
    )
    write_json(info, path)
    return info


def read_baseline(folder) -> dict | None:
    """The run folder's ``baseline.json``, or None when the baseline was not computed."""
    path = Path(folder) / JSON_NAME
    return read_json(path) if path.is_file() else None


# ---------------------------------------------------------------- beside fine-tuning


def start_beside(folder, splits, seed: int, device) -> Beside | None:
    """Start the classical reference of ``splits`` in a child process when fine-tuning runs on an accelerator
    and the run folder has no baseline.json yet; None otherwise (on a CPU the cores are the training's, so
    ``baseline_run`` computes it after training, as before)."""
    if str(device).split(":")[0] == "cpu" or (Path(folder) / JSON_NAME).is_file():
        return None
    return Beside(splits, seed)


class Beside:
    """``tfidf_lr`` of three splits in a child Python process (``python -m paperlib.baselines DIR``).

    A child process, not a thread (TF-IDF's tokenising holds the GIL the training loop needs) and not
    multiprocessing (a Dask worker is a daemonic process and may not fork children).  The splits go to a
    temporary folder outside the run folder; the child writes its result there; ``result()`` waits for it and
    computes in this process instead if the child failed, so the numbers are the same either way.  The child
    is killed when this object is closed or collected (an interrupted fine-tuning leaves no process behind)."""

    def __init__(self, splits, seed: int):
        self.splits, self.seed = splits, seed
        self.tmp = Path(tempfile.mkdtemp(prefix="paperlib-baseline-"))
        for name in ("train", "val", "test"):
            frame = getattr(splits, name)
            pd.DataFrame({"text": frame["text"].astype(str), "label": frame["label"]}).to_parquet(
                self.tmp / f"{name}.parquet", index=False
            )
        root = str(Path(__file__).resolve().parent.parent)  # the paperlib this process imported
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        env.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        with open(self.tmp / "stderr.txt", "wb") as err:  # a file, not a pipe nobody reads while M_0 trains
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "paperlib.baselines", str(self.tmp), str(seed)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self._finalizer = weakref.finalize(self, _stop, self.proc, self.tmp)

    def result(self) -> tuple[dict, np.ndarray]:
        """(info, test predictions), as ``tfidf_lr`` returns them."""
        try:
            self.proc.wait()
            if self.proc.returncode == 0 and (self.tmp / "info.json").is_file():
                info = json.loads((self.tmp / "info.json").read_text())
                return info, np.load(self.tmp / "pred.npy", allow_pickle=False)
            import warnings

            err = (self.tmp / "stderr.txt").read_text(errors="replace").strip().splitlines()
            warnings.warn(
                f"the classical reference's child process failed (exit {self.proc.returncode}"
                f"{': ' + err[-1][:200] if err else ''}); computing it here",
                stacklevel=3,
            )
            s = self.splits
            return tfidf_lr(s.train, s.val, s.test, seed=self.seed)
        finally:
            self.close()

    def close(self) -> None:
        self._finalizer()


def _stop(proc: subprocess.Popen, tmp: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def _child(folder: str, seed: str) -> None:
    folder_path = Path(folder)
    train, val, test = (pd.read_parquet(folder_path / f"{n}.parquet") for n in ("train", "val", "test"))
    info, pred = tfidf_lr(train, val, test, seed=int(seed), n_jobs=CHILD_JOBS)
    np.save(folder_path / "pred.npy", np.asarray(pred))
    (folder_path / "info.json").write_text(json.dumps(info))


if __name__ == "__main__":  # through the importable module, so that joblib's workers find _fit by name
    from paperlib.baselines import _child as child

    child(*sys.argv[1:3])


def _fit(x, y, c: float, seed: int, blas_threads: int | None):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
