"""Every ```python block of the README and of docs/ runs.

The blocks of one page run in order in one namespace, as a reader would run
them. ```py blocks show other libraries' code (PyTorch, MLX), which is not
installed here; they are not run, and may not import diffcholinv. The site
builds, and its API page renders (math, sections, examples).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import diffcholinv

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PEER_BLOCK = re.compile(r"^```py\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# The optional gp extra (docs/guides/gaussian-processes.md, pitfalls.md): pages that import
# them are skipped where they are not installed.
GP_LIBRARIES = {"tinygp", "gpjax", "equinox", "sklearn", "optimistix", "numpyro"}


def _blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_readme_has_code():
    assert len(_blocks(ROOT / "README.md")) >= 2


@pytest.mark.parametrize("index", range(len(_blocks(ROOT / "README.md"))))
def test_readme_block_runs(index):
    code = _blocks(ROOT / "README.md")[index]
    exec(compile(code, f"README.md[{index}]", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("page", [p for p in PAGES if p.parent != ROOT], ids=_id)
def test_docs_page_blocks_run(page):
    namespace = {"__name__": "__docs__"}
    for i, code in enumerate(_blocks(page)):
        try:
            exec(compile(code, f"{_id(page)}[{i}]", "exec"), namespace)
        except ModuleNotFoundError as e:
            if e.name not in GP_LIBRARIES:
                raise
            pytest.skip(f"{_id(page)} needs {e.name} (the gp extra)")


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_unrun_blocks_are_other_libraries(page):
    for code in PEER_BLOCK.findall(page.read_text(encoding="utf-8")):
        assert re.search(r"^import (torch|mlx)", code, re.MULTILINE), code
        assert "diffcholinv" not in code, code


def test_guides_have_runnable_code():
    for name in ("pytorch", "numpy-scipy", "mlx", "pitfalls", "gaussian-processes"):
        assert _blocks(ROOT / "docs" / "guides" / f"{name}.md"), name


# The built site: what a reader's browser gets. mkdocs build --strict passes
# on a docstring mkdocstrings renders badly (reST math as literal text, a
# Returns section split into one row per line, examples without prompts), so
# the API page's HTML is checked here. The docs extra (in dev) has mkdocs.
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = 'the site needs the docs extra: pip install -e ".[docs]"'
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
        pytest.importorskip(module, reason=why)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--site-dir", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _section(page: str, title: str) -> str:
    """The HTML of one docstring section, up to the next section or the end of the object."""
    heading = f'<span class="doc-section-title">{title}:</span>'
    start = page.index(heading) + len(heading)
    ends = [page.find(mark, start) for mark in ("doc-section-title", "<details")]
    return page[start : min([i for i in ends if i >= 0], default=len(page))]


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_site_math_renders_offline(site: Path):
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert ".. math::" not in page and "$$" not in page
    assert re.search(r'<div class="arithmatex">\\\[.*?\\\]</div>', page, re.DOTALL)
    assert '<span class="arithmatex">\\(' in page
    # MathJax is served with the site, never from a CDN.
    for path in site.rglob("*.html"):
        scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', path.read_text(encoding="utf-8"))
        assert not [s for s in scripts if "//" in s], (path, scripts)
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    assert any(s.endswith("javascripts/mathjax/tex-svg.js") for s in scripts), scripts
    assert (site / "javascripts" / "mathjax" / "tex-svg.js").stat().st_size > 10**6
    assert (site / "javascripts" / "mathjax" / "LICENSE").is_file()


def test_site_returns_is_one_item(site: Path):
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    returns = _section(page, "Returns")
    assert returns.count('class="doc-section-item"') == 1, _text(returns)
    assert "see docs/robustness.md" in _text(returns)


def test_site_examples_keep_prompts_and_outputs(site: Path):
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    shown = _text("".join(re.findall(r"<pre>.*?</pre>", _section(page, "Examples"), re.DOTALL)))
    shown_lines = {line.rstrip() for line in shown.splitlines()}
    doc = (diffcholinv.cholesky_inv.__doc__ or "").split("Examples:")[1].split("References:")[0]
    prompts, outputs, in_example = [], [], False
    for line in (re.sub(r"\s*# doctest:.*$", "", raw.strip()) for raw in doc.splitlines()):
        if line.startswith(">>> "):
            prompts.append(line)
        elif in_example and line:
            outputs.append(line)  # what the doctest expects
        in_example = bool(line) and (in_example or line.startswith(">>> "))
    assert len(prompts) >= 10 and len(outputs) >= 4, (prompts, outputs)
    for line in prompts + outputs:
        assert line in shown_lines, line
