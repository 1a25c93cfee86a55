"""docs/architecture.md stays true: every path and every module it names exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = "contracts|runtime|keys|usage|api|cli|infra|coordinator"
TOP = ("services/", "shared/", "infra/", "tests/", "bench/", "docs/", "examples/")


def _quoted() -> list[str]:
    return re.findall(r"`([^`\s]+)`", DOC)


def test_every_path_it_names_exists() -> None:
    paths = [q for q in _quoted() if q.startswith(TOP)]
    assert paths, "the document names no path: the check would be vacuous"
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert missing == []


def test_every_module_and_name_it_names_imports() -> None:
    names = [q for q in _quoted() if re.fullmatch(rf"aitbc_({PACKAGES})(\.[A-Za-z_]+)*", q)]
    assert names, "the document names no module: the check would be vacuous"
    missing = []
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                found: object = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if found is None:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert missing == []


def test_the_readme_links_to_it() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
