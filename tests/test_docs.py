"""The README is a map and the docs hold together: length, first commands, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace or ")" (an optional "title").
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def links(markdown: str) -> list[str]:
    """Every Markdown link and image target outside code blocks and inline code."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return LINK.findall(text)


def broken_links(page: Path, repo: Path) -> list[str]:
    """Relative link targets of ``page`` that do not exist inside ``repo``. Web links
    (http, https, mailto) and pure #anchors are skipped; a #fragment is stripped. A target
    that leaves the repository counts as broken even if the file exists."""
    bad = []
    repo = repo.resolve()
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(repo) or not resolved.exists():
            bad.append(target)
    return bad


def doc_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """The commands of the README's first code block, comments dropped."""
    block = re.search(r"^```[a-z]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert block, "README.md has no code block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


# --- the link checker itself can fail ---------------------------------------------------

def test_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# there\n")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](there.md) [ok with anchor](there.md#there) [anchor only](#top) [web](https://example.org/x)\n"
        "![image ok](../pic.png) [missing](nowhere.md) ![missing image](gone.png#x)\n"
        "[outside the repo](../../shared/DESIGN.md) `[not a link](in-code.md)`\n"
        "```\n[also not a link](in-fence.md)\n```\n")
    assert broken_links(page, tmp_path) == ["nowhere.md", "gone.png#x", "../../shared/DESIGN.md"]


def test_links_are_parsed_with_titles_and_brackets():
    assert links('[a [b] c](x.md "title")') == ["x.md"]
    assert links("see [docs](docs/) and ![img](docs/report.png)") == ["docs/", "docs/report.png"]


# --- the README ------------------------------------------------------------------------

def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}); move detail to docs/"


def test_readme_names_the_report_on_its_first_screen():
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:60])
    assert "reports/report/index.html" in first


def test_readme_starts_with_the_two_commands_ci_and_make_use():
    assert readme_commands() == ["make repro", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    repro = re.search(r"^repro:.*\n((?:\t.*\n)+)", makefile, re.M)
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert repro and "scripts/repro" in repro.group(1)  # `dvc repro`, stage by stage on two lanes
    assert '"dvc", "repro"' in (ROOT / "scripts" / "repro").read_text(encoding="utf-8")
    assert test and "python -m pytest" in test.group(1)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test\s*$", ci, re.M), ".ci/run must run the README's test command"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page, ROOT) == []


def test_docs_pages_are_reachable_from_the_readme_or_the_docs_index():
    linked = set()
    for page in doc_pages():
        for target in links(page.read_text(encoding="utf-8")):
            linked.add((page.parent / target.split("#", 1)[0]).resolve())
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert orphans == []
