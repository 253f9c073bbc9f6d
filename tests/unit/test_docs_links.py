"""The documentation's relative links resolve: every `](path#anchor)` in README.md, docs/*.md and the other
READMEs names a file that exists and, for a Markdown page, a heading it has (GitHub's anchor rules: lowercase,
punctuation dropped, spaces to hyphens, repeated headings numbered). Pages move; links must move with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"```.*?```", re.S)


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in page.read_text().split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        heading = None if in_fence else re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading is None:
            continue
        anchor = re.sub(r"[^\w\- ]", "", heading.group(2).strip().lower()).replace(" ", "-")
        n = seen.get(anchor, 0)
        seen[anchor] = n + 1
        found.add(anchor if n == 0 else f"{anchor}-{n}")
    return found


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]


def broken_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text()).replace("\n", " ")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"missing file: {target}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"missing heading: {target}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [gone](b.md) [no heading](a.md#nowhere)\n")
    assert broken_links(tmp_path / "a.md") == ["missing file: b.md", "missing heading: a.md#nowhere"]


def test_the_docs_pages_exist_and_the_readme_links_each() -> None:
    readme = (ROOT / "README.md").read_text()
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs, "docs/ holds the reference pages the README links"
    assert [p.name for p in docs if f"docs/{p.name}" not in readme] == []
