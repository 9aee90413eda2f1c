"""paperlib report: static HTML of a run's executed notebooks, checked in a real headless browser.

The run folder is built here (notebooks with outputs written directly, no kernel), so the test takes
seconds.  The browser part needs Playwright and a Chromium executable (Debian: ``apt-get install
chromium``; or ``$PAPERLIB_CHROMIUM``) and skips cleanly without them."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from paperlib.errors import PaperlibError  # noqa: E402
from paperlib.report import write_report  # noqa: E402
from paperlib.reproduce import DATASET_NOTEBOOKS, SUMMARY_NOTEBOOK  # noqa: E402


def _png(colour: str) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1], color=colour)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    plt.close(fig)
    return buffer.getvalue()


DISPLAY_FORMULA = r"S_1(l) = \frac{1}{N\,d_{ff}} \sum_{t=1}^{N} \big\lVert a_{l,t} \big\rVert_2"


def _executed_notebook(path: Path, title: str) -> None:
    image = base64.b64encode(_png("#CC3311")).decode("ascii")
    cells = [
        new_markdown_cell(f"# {title} with $M_0$\n\nA formula, $\\mathcal{{L}} = -\\log p$, and a table below."),
        new_markdown_cell(f"A display formula\n$${DISPLAY_FORMULA}$$\nand text after it."),
        new_code_cell(
            "print('accuracy 0.95')",
            execution_count=1,
            outputs=[new_output("stream", name="stdout", text="accuracy 0.95\n")],
        ),
        new_code_cell(
            "show()",
            execution_count=2,
            outputs=[new_output("display_data", data={"image/png": image, "text/plain": "<Figure>"})],
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)


def make_run(runs: Path, datasets=("alpha", "beta")) -> Path:
    for dataset in datasets:
        for name in DATASET_NOTEBOOKS:
            _executed_notebook(runs / dataset / f"{name}.ipynb", f"{dataset} {name}")
    summary = runs / "summary"
    _executed_notebook(summary / f"{SUMMARY_NOTEBOOK}.ipynb", "across datasets")
    pd.DataFrame({"dataset": list(datasets), "Random-Forest": [0.9, 0.8]}).to_csv(
        summary / "table1_wide.csv", index=False
    )
    pd.DataFrame({"claim": ["RF is best"], "verdict": ["partly"]}).to_csv(summary / "claims.csv", index=False)
    (summary / "figures").mkdir()
    (summary / "figures" / "06_figure1_grid.png").write_bytes(_png("#0077BB"))
    (runs / "empty_folder").mkdir()  # a folder without notebooks is not listed
    return runs


def test_report_renders_every_notebook_and_an_index(tmp_path):
    runs = make_run(tmp_path / "runs")
    index = write_report(runs)
    assert index == runs / "report" / "index.html"
    pages = sorted(p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*.html") if p != index)
    expected = sorted(
        [f"{d}/{nb}.html" for d in ("alpha", "beta") for nb in DATASET_NOTEBOOKS] + [f"summary/{SUMMARY_NOTEBOOK}.html"]
    )
    assert pages == expected
    html = index.read_text()
    for page in expected:
        assert f'href="{page}"' in html
    assert "empty_folder" not in html
    assert "RF is best" in html and "0.9" in html  # the summary tables
    assert html.count("data:image/png;base64,") == 1  # the Figure 1 grid, embedded
    page = (index.parent / "alpha" / f"{DATASET_NOTEBOOKS[0]}.html").read_text()
    assert "accuracy 0.95" in page and "data:image/png;base64," in page
    for cdn in ("cdnjs", "require.js", "mathjax", "unpkg"):  # nothing to fetch from a CDN
        assert cdn not in page.lower() and cdn not in html.lower()
    assert page.count("<math") == 3 and "$" not in _visible_text(page)  # the heading's, the inline and the display one
    assert 'display="block"' in page and "<mfrac>" in page and "ns0:" not in page


def _visible_text(page: str) -> str:
    """The text a reader sees: the page without its <style> and <script> elements and tags."""
    from html.parser import HTMLParser

    chunks, skip = [], []

    class Text(HTMLParser):
        def handle_starttag(self, tag, attrs):
            skip.append(tag in ("style", "script"))

        def handle_endtag(self, tag):
            if skip:
                skip.pop()

        def handle_data(self, data):
            if not any(skip):
                chunks.append(data)

    Text().feed(page)
    return "".join(chunks)


def notebook_formulas() -> list[tuple[str, str, bool]]:
    """(notebook, TeX, display) for every formula in the markdown cells of the committed notebooks 00-06."""
    import re

    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0[0-6]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for m in re.finditer(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", cell.source, re.S):
                    found.append((path.stem, m.group(1) or m.group(2), m.group(1) is not None))
    return found


def test_every_formula_of_the_notebooks_converts_to_mathml_completely():
    """No formula of notebooks 00-06 falls back to its TeX source, and none keeps a TeX command as text."""
    import re
    import warnings

    from paperlib.report import tex_to_mathml

    formulas = notebook_formulas()
    assert len(formulas) > 50 and any(display for _, _, display in formulas)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback warns
        for notebook, tex, display in formulas:
            out = tex_to_mathml(tex, display)
            assert out.startswith("<math") and out.endswith("</math>"), (notebook, tex)
            assert not re.search(r">[^<]*\\[A-Za-z]", out), (notebook, tex, out)  # a command shown as text


def test_a_formula_the_converter_cannot_render_shows_its_source_and_warns():
    from paperlib.report import tex_to_mathml

    with pytest.warns(UserWarning, match="notacommand"):
        out = tex_to_mathml(r"x = \notacommand{y} < 1")
    assert out == '<code class="tex">x = \\notacommand{y} &lt; 1</code>'


def _hrefs(page: str) -> list[str]:
    from html.parser import HTMLParser

    found = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "a":
                found.append(dict(attrs).get("href"))

    Links().feed(page)
    return found


@pytest.mark.parametrize("via", ["function", "cli"])
def test_report_without_pages_links_the_executed_notebooks(tmp_path, via, capsys):
    runs = make_run(tmp_path / "runs")
    stale = runs / "report" / "alpha" / "01_finetune_baseline.html"  # a page of an earlier full report
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    if via == "function":
        index = write_report(runs, pages=False)
    else:
        from paperlib import cli

        cli.main(["report", "--runs", str(runs), "--no-pages"])
        assert "report: " in capsys.readouterr().out
        index = runs / "report" / "index.html"
    assert index == runs / "report" / "index.html"
    assert [p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*") if p.is_file()] == ["index.html"]
    hrefs = _hrefs(index.read_text())
    targets = [(index.parent / href).resolve() for href in hrefs]
    assert all(t.is_file() and t.suffix == ".ipynb" for t in targets), hrefs
    executed = [runs / d / f"{nb}.ipynb" for d in ("alpha", "beta") for nb in DATASET_NOTEBOOKS] + [
        runs / "summary" / f"{SUMMARY_NOTEBOOK}.ipynb"
    ]
    assert sorted(targets) == sorted(p.resolve() for p in executed)  # each notebook of the run, once
    assert "RF is best" in index.read_text()  # the summary tables stay


def test_report_bad_input_is_one_error_line(tmp_path):
    with pytest.raises(PaperlibError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PaperlibError, match="no executed notebooks"):
        write_report(tmp_path / "empty")
    done = subprocess.run(
        [sys.executable, "-m", "paperlib", "report", "--runs", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "empty" / "report").exists()


def chromium() -> str | None:
    """A Chromium or Chrome executable: $PAPERLIB_CHROMIUM, else the first one on PATH."""
    if os.environ.get("PAPERLIB_CHROMIUM"):
        return os.environ["PAPERLIB_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


MATHS_CHECK = """() => {
  const maths = [...document.querySelectorAll("math")];
  const fractions = [...document.querySelectorAll("mfrac")].map(f => {
    const [num, den] = [...f.children].map(c => c.getBoundingClientRect());
    return num.bottom <= den.top + 1;
  });
  return {
    math: maths.length,
    mathml: maths.filter(m => m instanceof MathMLElement && m.getBoundingClientRect().width > 0).length,
    fractions_stacked: fractions.filter(Boolean).length,
    fractions: fractions.length,
    dollars: (document.body.innerText.match(/\\$/g) || []).length,
  };
}"""


def browse(index: Path, screenshot: Path | None = None, page_screenshot: Path | None = None) -> dict:
    """Open ``index`` and every page it links in headless Chromium, offline; report what went wrong.

    On every linked page the formulas are checked as the browser laid them out: MathML elements
    (``MathMLElement``) of non-zero size, every fraction's numerator drawn above its denominator,
    and no ``$`` left in the visible text (``page_screenshot``: the first such page, at its display formula)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser test")
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium executable (apt-get install chromium, or set PAPERLIB_CHROMIUM)")
    problems = {"console": [], "network": [], "broken_links": [], "broken_images": [], "maths": []}
    pages_seen = 0
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # an executable that cannot start here (e.g. no shared libraries)
            pytest.skip(f"Chromium at {executable} does not start: {str(exc).splitlines()[0]}")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems["console"].append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems["console"].append(f"{page.url}: {e}"))

        def offline(route):  # the report must need no network: anything but file: and data: is refused and noted
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                problems["network"].append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        queue, seen = [index.resolve().as_uri()], set()
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            response = page.goto(url, wait_until="load")
            pages_seen += 1
            if response is not None and not response.ok:
                problems["broken_links"].append(url)
                continue
            problems["broken_images"] += page.eval_on_selector_all(
                "img",
                "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 60))",
            )
            if url != index.resolve().as_uri():
                problems["maths"].append(page.evaluate(MATHS_CHECK) | {"url": url})
                if page_screenshot is not None and not page_screenshot.exists():
                    page.eval_on_selector('math[display="block"]', "m => m.scrollIntoView({block: 'center'})")
                    page.screenshot(path=str(page_screenshot))
            if url == index.resolve().as_uri():
                if screenshot is not None:
                    page.screenshot(path=str(screenshot), full_page=True)
                for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
                    if href.startswith("file:"):
                        target = Path(href[len("file://") :].split("#")[0])
                        if not target.is_file():
                            problems["broken_links"].append(href)
                        else:
                            queue.append(href.split("#")[0])
        browser.close()
    problems["pages"] = pages_seen
    return problems


def test_report_loads_in_a_headless_browser_offline(tmp_path):
    runs = make_run(tmp_path / "runs")
    index = write_report(runs)
    shot, maths_shot = tmp_path / "index.png", tmp_path / "page_with_maths.png"
    problems = browse(index, shot, maths_shot)
    assert problems["pages"] == 1 + 2 * len(DATASET_NOTEBOOKS) + 1  # the index and every page it links
    assert problems["broken_links"] == [] and problems["broken_images"] == []
    assert problems["console"] == [] and problems["network"] == []
    assert shot.stat().st_size > 10_000 and maths_shot.stat().st_size > 10_000
    assert len(problems["maths"]) == problems["pages"] - 1
    for seen in problems["maths"]:  # each page: three formulas, drawn as maths, one stacked fraction, no $ shown
        assert (seen["math"], seen["mathml"], seen["fractions"], seen["fractions_stacked"], seen["dollars"]) == (
            3,
            3,
            1,
            1,
            0,
        ), seen
