"""Every ```python block of the README and of docs/ runs.

The blocks of one page run in order in one namespace, as a reader would run
them. ```py blocks show other libraries' code (PyTorch, MLX), which is not
installed here; they are not run, and may not import diffcholinv.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PEER_BLOCK = re.compile(r"^```py\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# The optional gp extra (docs/guides/gaussian-processes.md): pages that import
# them are skipped where they are not installed.
GP_LIBRARIES = {"tinygp", "gpjax", "equinox", "sklearn"}


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
