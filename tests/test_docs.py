"""The docs: their marked Python blocks run as a user would copy them, and their generated parts are real.

A block runs when the line before its opening fence is ``<!-- test: run -->``: blocks that need only random
weights and tiny inputs. Each runs in a fresh namespace in an empty working directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from docs import hooks
from uniformer.models.zoo.catalog import list_models, model_info
from uniformer.models.zoo.tables import zoo_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
RUN_MARK = "<!-- test: run -->"
# Guides without a block that runs, and why.
NOT_RUN = {"guides/detection.md": "a Mask R-CNN forward at its 800-pixel test size takes seconds on a CPU"}


def _blocks(page: Path) -> list[str]:
    return re.findall(rf"^{re.escape(RUN_MARK)}\n```python\n(.*?)^```$", page.read_text(), re.S | re.M)


RUNNABLE = [(page, i, code) for page in PAGES for i, code in enumerate(_blocks(page))]


@pytest.mark.parametrize(
    "code", [code for _, _, code in RUNNABLE], ids=[f"{p.relative_to(ROOT)}:{i}" for p, i, _ in RUNNABLE]
)
def test_marked_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs block>", "exec"), {"__name__": "__docs__"})


def test_every_run_mark_opens_a_python_block() -> None:
    for page in PAGES:
        marks = page.read_text().count(RUN_MARK)
        assert marks == len(_blocks(page)), f"{page}: a {RUN_MARK} line not followed by a ```python block"


def test_every_guide_has_a_block_that_runs() -> None:
    for page in sorted((DOCS / "guides").glob("*.md")):
        name = str(page.relative_to(DOCS))
        assert bool(_blocks(page)) != (name in NOT_RUN), f"{name}: a block that runs, or a reason in NOT_RUN"


def test_zoo_page_has_every_task_and_its_table_is_the_registry() -> None:
    page = (DOCS / "zoo.md").read_text()
    for task in hooks.ZOO_TASKS:
        assert f"<!-- zoo:{task} -->" in page
        assert zoo_table(list_models(task=task)) in hooks.render_markers(page)
    assert {model_info(name).task for name in list_models()} == set(hooks.ZOO_TASKS), "a zoo task without a table"


def test_unknown_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="zoo:faces"):
        hooks.render_markers("<!-- zoo:faces -->\n")


def _write_demo_out(root: Path) -> None:
    for task, (_, columns) in hooks.DEMOS.items():
        result = {"metric": "m", "seconds": 1.0, **{key: 0.5 for key in columns}}
        (root / task).mkdir(parents=True)
        (root / task / "result.json").write_text(json.dumps(result))
    (root / "pose" / "result.json").write_text(
        json.dumps({"metric": "AP", "value": 0.763, "chance": 0.134, "AP50": 0.99, "AP75": 0.87, "AR": 0.797})
    )


def test_demo_results_are_read_from_each_demos_result_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_demo_out(tmp_path / "demo_out")
    monkeypatch.setattr(hooks, "DEMO_RESULTS", tmp_path / "demo_results.json")
    hooks.main([str(tmp_path / "demo_out")])
    text = hooks.render_markers("<!-- demos -->\n", demo_results=tmp_path / "demo_results.json")
    assert "| `uniformer demo pose` (" in text
    assert "| 76.30% | 99.00% | 87.00% | 79.70% | 13.40% |" in text


def test_missing_demo_result_is_named(tmp_path: Path) -> None:
    _write_demo_out(tmp_path)
    (tmp_path / "detection" / "result.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"detection/result\.json"):
        hooks.collect_demo_results(tmp_path)


def test_missing_metric_is_named(tmp_path: Path) -> None:
    results = json.loads((DOCS / "demo_results.json").read_text())
    del results["segmentation"]["macc"]
    with pytest.raises(ValueError, match="segmentation demo's result has no macc"):
        hooks.render_demo_results(results)


def test_committed_demo_results_cover_every_demo() -> None:
    text = hooks.render_markers("<!-- demos -->\n")
    assert all(f"`uniformer demo {task}`" in text for task in hooks.DEMOS)


def test_sphinx_roles_render_as_code() -> None:
    html = "see :func:<code>load_config</code> and :class:<code>~uniformer.engine.Trainer</code>, :<code>x</code>"
    assert hooks.strip_roles(html) == "see <code>load_config</code> and <code>Trainer</code>, :<code>x</code>"
