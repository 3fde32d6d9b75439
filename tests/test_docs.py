"""The README and the docs: the test command is CI's, and every relative link resolves.

Links are checked as GitHub renders them: a path relative to the Markdown
file, and an anchor (``#...``) that is the slug of one of the target's
headings (lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2``
for repeats).
"""

import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKDOWN = [ROOT / "README.md", ROOT / "notebooks" / "README.md", ROOT / "weights" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _slugs(path):
    """GitHub's anchors for the headings of ``path``."""
    slugs, seen = set(), {}
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text("utf-8")), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def _broken_links(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text("utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no {os.path.relpath(linked, ROOT)})")
        elif anchor and linked.suffix == ".md" and anchor not in _slugs(linked):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(linked, ROOT)})")
    return broken


def test_every_relative_link_in_the_readme_and_docs_resolves():
    assert len(MARKDOWN) >= 6
    broken = {str(p.relative_to(ROOT)): _broken_links(p) for p in MARKDOWN}
    assert not {name: links for name, links in broken.items() if links}


def test_the_slugs_are_githubs():
    page = ROOT / "docs" / "PERFORMANCE.md"
    assert "fcn-8s-u-net-and-deeplabv3-mobilenetv2-against-pytorch" in _slugs(page)
    assert "deployed-forms---runtimes" in _slugs(page)


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, "the README's two commands are two bash blocks"
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    commands = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))]
    assert blocks[1].splitlines() == commands
