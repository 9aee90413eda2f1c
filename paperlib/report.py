"""``paperlib report``: a run's executed notebooks as static HTML, with an index to browse them offline.

    paperlib report --runs runs/quick        # writes runs/quick/report/index.html

For every dataset folder of the run that holds executed notebooks (01-05) and for ``summary/`` (06),
each notebook is rendered with nbconvert's JupyterLab template into ``report/<folder>/<notebook>.html``.
The pages load nothing from the network: CSS is inlined, figures are embedded as data URIs, and the
template's CDN scripts (require.js, MathJax, mermaid) are left out.  Formulas (``$...$``, ``$$...$$``,
``\\[...\\]``, ``\\begin{...}``) are converted to MathML when the page is written (``latex2mathml``), which
every current browser lays out natively: no script, no font files, nothing beside the page.
``report/index.html`` links every page and shows Table 1, the claims check, the distillation summary and
the Figure 1 grid of the run."""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
import warnings
from pathlib import Path

from .errors import PaperlibError
from .io import atomic_dir, atomic_path, check_writable, read_csv
from .paths import SEED_PREFIX, display_path, seed_roots

REPORT_DIR = "report"
# lab's page without the scripts it would fetch from a CDN (MathJax's block holds the MathML style instead);
# everything shown is static HTML and CSS
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
<style>math{font-size:1.1em}math[display="block"]{font-size:1.25em;margin:0.6em 0}code.tex{color:#a00}</style>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
SUMMARY_TABLES = (
    (
        "table1_mean.csv",
        "Table 1, selection-free: test accuracy (%) averaged over k; + / \u2212 = "
        "significantly above / below the reference chosen on validation",
    ),
    ("table1_wide.csv", "Table 1 as in the paper: maximum test accuracy (%) over k (selected on test)"),
    ("claims.csv", "Claims check"),
    ("distill_summary.csv", "Distillation at k*"),
)
FIGURE1 = "figures/06_figure1_grid.png"
STYLE = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.table-wrap{overflow-x:auto}ul.nb{columns:2}code{background:#f3f3f3;padding:0 3px}"""


# latex2mathml leaves these commands as raw text (3.81): rewritten to what it converts.  \\lVert etc. become the
# character itself so that \\big / \\Big still size it; \\% inside \\text{} would stay a backslash.
TEX_REWRITES = (
    (re.compile(r"\\[lr]?Vert(?![A-Za-z])"), "\u2016"),
    (re.compile(r"\\arg(?![A-Za-z])"), r"\\operatorname{arg}"),
    (re.compile(r"\\text\{([^{}]*)\}"), lambda m: r"\text{" + m.group(1).replace(r"\%", "%") + "}"),
)
_LEFT_OVER = re.compile(r">[^<]*\\[A-Za-z]+[^<]*<")  # a TeX command that came through as text


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One formula as a MathML ``<math>`` element (``display`` for ``$$...$$``), via ``latex2mathml``.

    A formula the converter cannot render completely (an unknown command left as text) is shown as its
    TeX source in ``<code class="tex">`` with a warning naming it, never as half-converted maths."""
    from latex2mathml.converter import convert

    source = tex.strip()
    for pattern, replacement in TEX_REWRITES:
        source = pattern.sub(replacement, source)
    try:
        out = convert(source, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises its own exception types for unbalanced input
        out, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = None if not _LEFT_OVER.search(out) else "a command it does not know"
    if reason is None:  # HTML puts <math> in the MathML namespace itself; an xmlns attribute would make
        return out.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "", 1)  # nbconvert's anchors write ns0:
    warnings.warn(f"formula shown as TeX source ({reason}): {tex.strip()!r}", stacklevel=2)
    return f'<code class="tex">{html.escape(tex.strip())}</code>'


def _math_renderer():
    from nbconvert.filters.markdown_mistune import IPythonRenderer

    class MathMLRenderer(IPythonRenderer):
        """nbconvert's markdown renderer with formulas written as MathML instead of left for MathJax."""

        def block_math(self, body: str) -> str:
            return tex_to_mathml(body, display=True)

        def inline_math(self, body: str) -> str:
            return tex_to_mathml(body)

        def latex_environment(self, name: str, body: str) -> str:
            return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    return MathMLRenderer


def _exporter():
    try:
        from jinja2 import DictLoader, pass_context
        from nbconvert import HTMLExporter
        from nbconvert.filters.markdown_mistune import MarkdownWithMath
    except ImportError:
        raise PaperlibError("paperlib report needs nbconvert: pip install 'paperlib[notebooks]'") from None
    try:
        import latex2mathml  # noqa: F401
    except ImportError:
        raise PaperlibError("paperlib report needs latex2mathml: pip install 'paperlib[notebooks]'") from None
    renderer = _math_renderer()

    class MathMLExporter(HTMLExporter):
        """nbconvert's HTML exporter whose markdown cells carry MathML (same arguments as its renderer)."""

        @pass_context
        def markdown2html(self, context, source):
            cell = context.get("cell", {})
            return MarkdownWithMath(
                renderer=renderer(
                    escape=False,
                    attachments=cell.get("attachments", {}),
                    embed_images=self.embed_images,
                    path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                    anchor_link_text=self.anchor_link_text,
                    exclude_anchor_links=self.exclude_anchor_links,
                    **self.lexer_options,
                )
            ).render(source)

    return MathMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"paperlib_offline.html.j2": OFFLINE_TEMPLATE})],
        template_file="paperlib_offline.html.j2",
        embed_images=True,
    )


def notebook_folders(runs: Path) -> list[Path]:
    """The folders of ``runs`` that hold executed notebooks: each seed root's datasets in name order (seed roots in
    seed order; a runs folder from before seeds holds its datasets directly), then summary."""
    roots = sorted(seed_roots(runs).values()) or [runs]
    folders = [
        p
        for root in roots
        for p in sorted(root.iterdir())
        if p.is_dir() and p.name not in ("summary", REPORT_DIR) and any(p.glob("0[1-5]_*.ipynb"))
    ]
    summary = runs / "summary"
    return folders + ([summary] if any(summary.glob("06_*.ipynb")) else [])


def _title(folder: Path, runs: Path) -> str:
    if folder.name == "summary":
        return "Across datasets"
    seed = folder.parent.name.removeprefix(SEED_PREFIX) if folder.parent != runs else None
    return f"Dataset <code>{html.escape(folder.name)}</code>" + (f", seed {html.escape(seed)}" if seed else "")


def render_notebook(path: Path, out: Path, exporter=None) -> Path:
    """``path`` (an executed notebook) as one self-contained HTML page at ``out``."""
    import nbformat

    exporter = exporter or _exporter()
    try:
        nb = nbformat.read(str(path), as_version=4)
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:  # not JSON / not a notebook
        raise PaperlibError(
            f"notebook {str(path)!r} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
            f"delete it and rerun `paperlib reproduce` (it runs that notebook again), then `paperlib report`"
        ) from None
    nb.metadata["title"] = f"{path.parent.name} · {path.stem}"
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    with atomic_path(out) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
    return out


def _table_html(path: Path) -> str:
    df = read_csv(path)
    return (
        '<div class="table-wrap">'
        + df.to_html(index=False, na_rep="", border=0, float_format=lambda v: f"{v:.4g}")
        + "</div>"
    )


def _image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def write_report(runs: str | os.PathLike, pages: bool = True) -> Path:
    """Render every executed notebook of ``runs`` and write ``runs/report/index.html``; return its path.

    ``pages`` False writes the index alone, linking the executed notebooks themselves (``../<folder>/NN.ipynb``):
    what the committed reference runs keep, since a notebook viewer (GitHub, JupyterLab) renders them."""
    runs = Path(runs).expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        raise PaperlibError(f"runs folder {str(runs)!r} is a file, not a folder; pass the folder of the run (--runs)")
    if not runs.is_dir():
        raise PaperlibError(
            f"runs folder {str(runs)!r} does not exist: run `paperlib reproduce` first (or pass --runs DIR)"
        )
    folders = notebook_folders(runs)
    if not folders:
        raise PaperlibError(
            f"{runs.name}/ holds no executed notebooks (01-06): run `paperlib reproduce --runs {runs.name}` first"
        )
    check_writable(runs, "runs folder", "--runs")
    exporter = _exporter() if pages else None
    # the whole report/ is built beside the old one and swapped in when complete: a notebook that fails to
    # render leaves the old report as it was, and no page of an earlier full report lingers unlinked
    with atomic_dir(runs / REPORT_DIR) as report:
        index = _write_pages(runs, folders, report, exporter, pages)
    return runs / REPORT_DIR / index.name


def _write_pages(runs: Path, folders: list[Path], report: Path, exporter, pages: bool) -> Path:
    sections = []
    for folder in folders:
        rel = folder.relative_to(runs).as_posix()  # seed-<S>/<dataset>, <dataset> (before seeds) or summary
        links = []
        for nb in sorted(folder.glob("0[1-6]_*.ipynb")):
            if pages:
                href = f"{rel}/{render_notebook(nb, report / rel / f'{nb.stem}.html', exporter).name}"
            else:
                href = f"../{rel}/{nb.name}"
            links.append(f'<li><a href="{href}">{html.escape(nb.stem)}</a></li>')
        sections.append(f'<h3>{_title(folder, runs)}</h3><ul class="nb">{"".join(links)}</ul>')
    summary = runs / "summary"
    parts = [
        f"<h1>paperlib run <code>{html.escape(runs.name)}</code></h1>",
        f"<p>Executed notebooks of the run, rendered {datetime.date.today().isoformat()} by "
        f"<code>paperlib report</code>. The pages need no network; formulas are MathML, drawn by the browser "
        "itself.</p>"
        if pages
        else f"<p>Index of the run's executed notebooks, written {datetime.date.today().isoformat()} by "
        f"<code>paperlib report --no-pages</code>: the links open the notebooks themselves (a notebook viewer "
        f"renders them); <code>paperlib report</code> renders them as HTML pages too.</p>",
        "<h2>Notebooks</h2>",
        *sections,
    ]
    if (summary / FIGURE1).is_file():
        parts += [
            "<h2>Figure 1 over datasets</h2>",
            "<p>Test accuracy against layers pruned, one panel per dataset "
            "(thick lines: fusion; grey band: Random mean ± sd; dotted: Oracle; dashed: the unpruned model).</p>",
            _image_html(summary / FIGURE1, "Figure 1 grid"),
        ]
    for name, caption in SUMMARY_TABLES:
        if (summary / name).is_file():
            parts += [f"<h2>{html.escape(caption)}</h2>", _table_html(summary / name)]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>paperlib run {html.escape(runs.name)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    index = report / "index.html"
    with atomic_path(index) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return index


def report_command(runs: str | os.PathLike, pages: bool = True) -> Path:
    """`paperlib report`: write the report and print where (relative to the working directory)."""
    index = write_report(runs, pages=pages)
    print(f"report: {display_path(index)} (open it in a browser)")
    return index
