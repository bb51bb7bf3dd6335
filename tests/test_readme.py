"""The README's model-zoo tables are the registry's (regenerate with `uniformer models --markdown`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from uniformer.models.zoo.catalog import list_models
from uniformer.models.zoo.tables import zoo_table

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("task", ["image", "video", "pose", "detection"])
def test_zoo_tables_match_the_registry(task: str) -> None:
    text = README.read_text()
    match = re.search(rf"<!-- zoo:{task}:start -->\n(.*?)\n<!-- zoo:{task}:end -->", text, re.S)
    assert match, f"README has no zoo:{task} markers"
    assert match.group(1) == zoo_table(list_models(task=task))


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head and "make test" in head
