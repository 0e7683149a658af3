"""Every ```python block of the README runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_readme_has_code():
    assert len(_blocks(ROOT / "README.md")) >= 2


@pytest.mark.parametrize("index", range(len(_blocks(ROOT / "README.md"))))
def test_readme_block_runs(index):
    code = _blocks(ROOT / "README.md")[index]
    exec(compile(code, f"README.md[{index}]", "exec"), {"__name__": "__readme__"})
