"""The front door: a short README whose links (and the docs pages' links) resolve."""
import re
from pathlib import Path
from typing import List, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> Set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    found = set()
    in_code = False
    for line in path.read_text(encoding="utf8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def local_links(path: Path) -> List[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf8"), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+://", target)]


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: depth belongs in docs/"
    text = "\n".join(lines)
    for page in ("training", "treebanks", "pretrained", "features", "tagging-corpora", "speed-and-hardware",
                 "benchmarks", "architecture"):
        assert f"(docs/{page}.md)" in text, f"README does not link docs/{page}.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(page: Path):
    assert page.exists()
    for target in local_links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        assert resolved.exists(), f"{page.name}: link to {target} points at nothing"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"
