"""The README: the two commands first, its task table from the registry, links that resolve, a page a newcomer finishes."""

from __future__ import annotations

import re
from pathlib import Path

from docs import hooks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head and "make test" in head


def test_task_table_matches_the_registry() -> None:
    text = README.read_text()
    match = re.search(r"<!-- zoo:summary:start -->\n(.*?)\n<!-- zoo:summary:end -->", text, re.S)
    assert match, "README has no zoo:summary markers"
    assert match.group(1) == hooks.zoo_summary(link_prefix="docs/")


def test_every_relative_link_resolves() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+://", link) and not link.startswith("#")]
    assert local, "no relative links found: the pattern no longer matches the README"
    missing = [link for link in local if not (README.parent / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_readme_stays_short_and_about_the_product() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for word in ("session", "issue", "(in progress)", "goal"):
        assert word not in text.lower(), f"README says {word!r}"


def test_layout_names_every_package() -> None:
    text = README.read_text()
    layout = text[text.index("## How the code is laid out") :]
    src = README.parent / "src" / "uniformer"
    packages = [d for d in [*src.iterdir(), *(src / "models").iterdir()] if (d / "__init__.py").is_file()]
    assert packages, "no packages found under src/uniformer"
    missing = [str(d.relative_to(src)) for d in packages if f"  {d.name}/" not in layout]
    assert not missing, f"the README's layout does not name {missing}"
