"""Running one notebook: papermill and its kernel (``execute``, ``is_complete``, ``kernel_died``, ``error_line``),
the environment of a notebook check, and cleaning executed notebooks (no progress bars, library warnings or
absolute paths in their outputs or metadata).  ``reproduce`` plans and runs the chains of them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import PaperlibError
from .paths import ROOT_ENV, display_path, portable_parameters, repo_root

# the kernel's own log (transport warnings, shutdown noise) would drown the progress lines; cell
# errors still reach the executed notebook and the failure report
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# seconds a kernel may take to start: papermill's 60 s is too short on a loaded machine (two grid workers on two
# cores each starting a kernel that imports torch)
KERNEL_START_TIMEOUT = 600


def _papermill():
    try:
        import papermill
    except ImportError:
        raise PaperlibError(
            "paperlib reproduce needs papermill and a Jupyter kernel: "
            "pip install 'paperlib[notebooks]' (papermill, ipykernel, nbformat)"
        ) from None
    return papermill


def _kernel_name() -> str:
    """The kernel papermill should start: ``python3`` must exist (ipykernel installs it)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if "python3" in KernelSpecManager().find_kernel_specs():
            return "python3"
    except ImportError:
        pass
    raise PaperlibError(
        "no Jupyter kernel named python3: pip install ipykernel && python -m ipykernel install --user --name python3"
    )


def check_environment(root: str | os.PathLike) -> dict[str, str | None]:
    """The environment of a notebook check (nbval) and of ``tools/refresh_notebooks.py`` (None: unset).

    A fresh runs root, fp32 (the declared precision of the checked numbers), no progress bars, a cache
    inside the root, and no ``$PAPERLIB_DATA_DIR``, so the notebooks use their embedded default data."""
    root = Path(root)
    return {
        ROOT_ENV: str(root),
        "PAPERLIB_PRECISION": "fp32",
        "PAPERLIB_QUIET": "1",
        "PAPERLIB_CACHE_DIR": str(root / "cache"),
        "PAPERLIB_DATA_DIR": None,
        "PAPERLIB_PROGRESS_FILE": None,
    }


def is_complete(path: Path, parameters: dict) -> bool:
    """True when ``path`` is a notebook papermill finished without error, run with ``parameters``."""
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
    except (OSError, ValueError):
        return False
    return (
        meta.get("exception") in (None, False)
        and meta.get("end_time") is not None
        and meta.get("parameters")
        in (json.loads(json.dumps(parameters)), json.loads(json.dumps(portable_parameters(parameters))))
    )


# ---------------------------------------------------------------- cleaning executed notebooks

# a progress bar as tqdm draws it ("eval:  40%|####      | 2/5 [00:01<00:02, 1.2it/s]") or its blank eraser
_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+(it|s)/(s|it)\]|^\s+$")
# "…/site-packages/x.py:21: SomeWarning: message" (its next line, the source, is indented)
_WARNING = re.compile(r"^\S*\.py:\d+: \w*Warning\b")
# an absolute POSIX path under a machine folder, or a Windows user/system path
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/-])/(?:tmp|home|root|work|Users|var|opt|usr|mnt|srv|private|data|scratch)"
    r"(?:/[^\s'\"<>:,;)\]}\\\x00-\x1f\x7f-\xff]+)+"
    r"|\b[A-Z]:\\{1,2}(?:Users|Windows|Program Files|ProgramData|temp)\b[^\s'\"<>]*"
)


def _strip_paths(text: str, roots: list[tuple[str, str]]) -> str:
    for absolute, shown in roots:
        text = text.replace(absolute + "/", "" if shown == "." else shown + "/").replace(absolute, shown)
    return ABSOLUTE_PATH.sub(
        lambda m: (
            display_path(m.group(0))
            if m.group(0).startswith("/")
            else ".../" + m.group(0).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        ),
        text,
    )


def clean_text(text: str, roots: list[tuple[str, str]] = ()) -> str:
    """Stream text without progress bars, library warnings or absolute paths.

    A line redrawn with carriage returns keeps what a terminal would show (the part after the last
    ``\\r``); lines that are progress bars, warnings (with their source line) or tqdm's widget hint go."""
    kept, skip_source = [], False
    for line in text.split("\n"):
        shown = line.rsplit("\r", 1)[-1]
        if skip_source and shown.startswith("  "):
            skip_source = False
            continue
        skip_source = False
        if _WARNING.search(shown):
            skip_source = True
            continue
        if ("\r" in line or "\x1b" in line) and (not shown.strip() or _BAR.search(shown)):
            continue
        if _BAR.search(shown) and "|" in shown:
            continue
        kept.append(shown)
    return _strip_paths("\n".join(kept), list(roots))


def _path_roots(extra=()) -> list[tuple[str, str]]:
    """(absolute folder, how to show it), longest first: the given folders, the repository root, home."""
    folders = {str(Path(p).expanduser().resolve()) for p in extra if p}
    folders |= {str(repo_root()), str(Path(__file__).resolve().parents[1])}
    pairs = [(f, display_path(f)) for f in folders]
    pairs = [(a, "." if s == "." else s) for a, s in pairs]
    home = str(Path.home().resolve())
    return sorted(pairs, key=lambda p: -len(p[0])) + [(home, "~")]


def clean_notebook(nb, roots=(), output_path: str | None = None):
    """Clean an executed notebook (an ``nbformat`` node) in place and return it.

    Outputs: progress bars, library warnings and empty streams dropped, absolute paths under
    ``roots``, the repository or the home folder shown relative (``display_path``), consecutive
    streams merged.  Metadata: papermill's input/output paths and parameters made portable."""
    pairs = _path_roots(roots)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = _strip_paths(cell.source, pairs)
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = clean_text(out.get("text", ""), pairs)
                if not out["text"].strip():
                    continue
                if (
                    outputs
                    and outputs[-1].get("output_type") == "stream"
                    and outputs[-1].get("name") == out.get("name")
                ):
                    outputs[-1]["text"] = outputs[-1]["text"].rstrip("\n") + "\n" + out["text"]
                    continue
            elif out.get("output_type") in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/html", "text/markdown"):
                    if mime in out.get("data", {}):
                        value = out["data"][mime]
                        value = "".join(value) if isinstance(value, list) else value
                        out["data"][mime] = _strip_paths(value, pairs)
            elif out.get("output_type") == "error":
                out["traceback"] = [_strip_paths(line, pairs) for line in out.get("traceback", [])]
                out["evalue"] = _strip_paths(out.get("evalue", ""), pairs)
            outputs.append(out)
        cell.outputs = outputs
    meta = nb.metadata.get("papermill")
    if meta is not None:
        for key in ("input_path", "output_path"):
            if meta.get(key):
                meta[key] = display_path(meta[key]) if Path(meta[key]).is_absolute() else meta[key]
        if output_path is not None:
            meta["output_path"] = output_path
        meta["parameters"] = portable_parameters(meta.get("parameters") or {})
        meta["environment_variables"] = {}
    return nb


def clean_notebook_file(path: Path, roots=(), output_path: str | None = None) -> None:
    """``clean_notebook`` on a file, rewritten in place."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.write(clean_notebook(nb, roots, output_path), str(path))


def execute(
    notebook: Path, output: Path, parameters: dict, cwd: Path | None = None, progress: str | None = None, clean_roots=()
) -> None:
    """Run ``notebook`` with ``parameters`` into ``output`` (temporary name first, cleaned, then renamed).

    ``progress``: a label; the notebook's loops then report to ``output``'s progress file and a
    terminal bar follows them."""
    from .progress import PROGRESS_ENV, Follower

    pm = _papermill()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    progress_file = output.with_name(f".{output.stem}.progress.json")
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(progress_file)  # the kernel inherits it
    try:
        with Follower(progress_file, progress or "", enabled=progress is not None):
            pm.execute_notebook(
                str(notebook),
                str(tmp),
                parameters=parameters,
                kernel_name=_kernel_name(),
                cwd=str(cwd or notebook.parent),
                language="python",
                progress_bar=False,
                log_output=False,
                extra_arguments=KERNEL_ARGUMENTS,
                start_timeout=KERNEL_START_TIMEOUT,
            )
        clean_notebook_file(tmp, [*clean_roots, output.parent], output_path=display_path(output))
        os.replace(tmp, output)
        output.with_name(f"{output.stem}.failed.ipynb").unlink(missing_ok=True)
    except BaseException:
        # papermill leaves the partial notebook (with the traceback) at tmp: keep it as *.failed.ipynb to read
        if tmp.exists():
            os.replace(tmp, output.with_name(f"{output.stem}.failed.ipynb"))
        raise
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def error_line(exc: BaseException) -> str:
    """An exception as one line: a notebook cell's error name and the first line of its message."""
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    return f"{name}: {str(value).splitlines()[0] if str(value) else ''}"


def kernel_died(exc: BaseException) -> bool:
    """True for a notebook whose kernel process died (nbclient's ``DeadKernelError``: killed, out of memory,
    a segfault) or never came up (jupyter_client's "Kernel died before replying to kernel_info": seen when
    nine workers start kernels at once and two draw the same ZMQ port), a fault of the machine rather than
    of the chain, so worth a retry."""
    try:
        from nbclient.exceptions import DeadKernelError
    except ImportError:  # pragma: no cover - papermill brings nbclient
        return False
    return isinstance(exc, DeadKernelError) or (
        isinstance(exc, RuntimeError) and "Kernel died before replying to kernel_info" in str(exc)
    )
