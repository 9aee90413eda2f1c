"""One look for every figure: the style, the palette, the strategies' line styles, and saving and showing.

One style (``STYLE``): Paul Tol's colour-blind-safe "vibrant" palette, real minus signs, legends beside or below
the axes at a size that never outgrows the plot; ``styled`` draws a plotting function under it.
``save_figure(fig, folder, name)`` writes ``name.png`` and ``name.pdf`` atomically; ``show_figure`` does the same
and, inside a notebook, shows the figure inline where it is made.  Headless processes (no display, no Jupyter
backend chosen) draw with Agg.  The figures themselves are in ``paperlib.plots``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

if not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")  # inside Jupyter MPLBACKEND is set to the inline backend and left alone

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .errors import PaperlibError  # noqa: E402
from .io import atomic_path  # noqa: E402
from .strategies import CATEGORY, SIGNALS, TRANSFER  # noqa: E402

RANDOM = "Random"
MINUS = "\u2212"
# Paul Tol's "vibrant" qualitative palette: distinguishable with the common colour-vision deficiencies
TOL = {
    "blue": "#0077BB",
    "cyan": "#33BBEE",
    "teal": "#009988",
    "orange": "#EE7733",
    "red": "#CC3311",
    "magenta": "#EE3377",
    "grey": "#BBBBBB",
    "black": "#000000",
    "dark grey": "#555555",
    "ochre": "#AA8800",
}
# one hue per signal category; members of a category differ by marker and line style
CATEGORY_COLOURS = {
    "activation": TOL["orange"],
    "mutual information": TOL["magenta"],
    "gradient": TOL["teal"],
    "weight": TOL["cyan"],
    "attention": TOL["ochre"],
}
MEMBER_MARKS = [dict(marker="o", ls="-"), dict(marker="s", ls="--"), dict(marker="^", ls=":")]
FIXED_STYLE = {
    "Random-Forest": dict(color=TOL["red"], lw=2.6, ls="-", marker="D", zorder=5),
    "Linear-Regression": dict(color=TOL["blue"], lw=2.6, ls="-", marker="v", zorder=5),
    "Oracle": dict(color=TOL["black"], lw=1.8, ls=":", marker="*", zorder=4),
    "Block-Influence": dict(color=TOL["dark grey"], lw=1.3, ls="-.", marker="x"),
    "Top-Drop": dict(color=TOL["dark grey"], lw=1.3, ls="-.", marker="+"),
    RANDOM: dict(color=TOL["dark grey"], lw=1.4, ls="--"),
}
MODE_LABELS = {
    "kd": "KD (\u03b1 = 0.5)",
    "ce": "\u03b1 = 0 (same training, no teacher)",
    "none": "no KD (pruned as is)",
}
MODE_STYLES = {
    "kd": dict(color=TOL["red"], marker="o", ls="-", lw=2.2, ms=7),
    "ce": dict(color=TOL["blue"], marker="s", ls="--", lw=1.8, ms=7, mfc="none", mew=1.6),
    "none": dict(color=TOL["dark grey"], marker="^", ls=":", lw=1.6, ms=6),
}
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.unicode_minus": True,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
}
DODGE = 0.07  # horizontal offset (in steps) between curves that coincide exactly
MAX_DODGE = 0.35  # ... and the widest spread of one group of coinciding curves


def styled(func):
    """Draw ``func``'s figure under the common ``STYLE``."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def minus(text: str) -> str:
    """A number's text with the typographic minus sign (U+2212) instead of a hyphen."""
    return text.replace("-", MINUS)


def strategy_style(name: str) -> dict:
    """Line style for a strategy: fusion bold, baselines grey and dashed, single signals in their
    category's colour, told apart within the category by marker and line style."""
    if name in FIXED_STYLE:
        return dict(FIXED_STYLE[name])
    if name.endswith(TRANSFER) and name.removesuffix(TRANSFER) in FIXED_STYLE:  # fusion trained on other datasets
        return dict(FIXED_STYLE[name.removesuffix(TRANSFER)], ls="--", lw=1.8, marker="", zorder=4)
    if name in CATEGORY:
        members = [s for s in SIGNALS if CATEGORY[s] == CATEGORY[name]]
        return dict(
            color=CATEGORY_COLOURS[CATEGORY[name]], lw=1.2, **MEMBER_MARKS[members.index(name) % len(MEMBER_MARKS)]
        )
    return dict(lw=1.2, ls="-")


def save_figure(fig, folder: str | os.PathLike, name: str, dpi: int = 150) -> list[Path]:
    """Write ``folder/name.png`` and ``folder/name.pdf`` (each to a temporary name, then renamed)."""
    folder = Path(folder)
    paths = []
    for fmt in ("png", "pdf"):
        path = folder / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill, nbval, JupyterLab), False in scripts and tests."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_figure(fig, folder: str | os.PathLike | None, name: str, inline_dpi: int = 80) -> list[Path]:
    """Save ``fig`` as PNG and PDF (``save_figure``) and, inside a notebook, show it inline as one PNG.

    ``folder`` None shows without saving (notebook 00, which belongs to no run).
    The inline image is drawn at ``inline_dpi`` (smaller than the saved file) so that an executed
    notebook stays small; it is shown explicitly whatever matplotlib backend the kernel has, and the
    figure is closed so that the inline backend does not show it a second time."""
    import io

    paths = save_figure(fig, folder, name) if folder is not None else []
    if _in_notebook():
        from IPython.display import Image, display

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=inline_dpi, bbox_inches="tight")
        display(Image(data=buffer.getvalue(), format="png"))
    plt.close(fig)
    return paths


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PaperlibError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise PaperlibError(f"{what} is empty; run the stage that writes it first")
