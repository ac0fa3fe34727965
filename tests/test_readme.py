"""The front page stays a front page: short, with the two setup commands CI runs, and every relative
link of the README and docs/ leading to a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str, inline_code: bool = False) -> str:
    """`text` without fenced code blocks (and without inline code unless `inline_code`): in code,
    brackets are not links and `#` starts no heading."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else line if inline_code else re.sub(r"`+[^`]*`+", "", line))
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation but `-` and `_` removed,
    spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, with GitHub's `-1`, `-2` suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(), inline_code=True).splitlines():
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(ROOT) if ROOT in destination.parents else destination}")
        elif anchor and destination.suffix == ".md" and unquote(anchor).lower() not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    return broken


def setup_commands() -> list[str]:
    section = README.read_text().split("\n## Setup: two commands\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)]


def test_the_readme_is_a_front_page():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_setup_section_holds_the_demo_and_the_command_ci_runs():
    demo, test = setup_commands()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert test == ci_command
    install = ci_command.rsplit(" && ", 1)[0]
    assert demo.startswith(install + " && ") and "\n" not in demo
    assert "clip-onnx export ViT-B/32 --weights random" in demo  # offline: no weights to download


def test_every_relative_link_of_the_readme_and_docs_resolves():
    assert len(PAGES) > 1
    broken = {page.relative_to(ROOT).as_posix(): broken_links(page) for page in PAGES}
    assert not {page: links for page, links in broken.items() if links}


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A heading: with `code`\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#a-heading-with-code) [self](#page) [web](https://example.com)\n"
                    "[gone](missing.md) [no heading](other.md#nowhere) [no anchor](#absent)\n"
                    "```\n[in code](not-checked.md)\n```\n")
    assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "other.md#nowhere", "#absent"]
