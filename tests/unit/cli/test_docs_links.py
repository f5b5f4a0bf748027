"""Every relative link in README.md and docs/*.md points at a file that exists (the reference moved into
docs/, and a moved page must not leave a dead link behind); no page points into the maintainers' notes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "README.md", ROOT / "eval" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve():
    dead = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                dead.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not dead, dead


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        assert "/work/shared" not in page.read_text() and "../shared" not in page.read_text(), page
