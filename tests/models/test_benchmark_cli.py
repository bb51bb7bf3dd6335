"""``uniformer benchmark model`` end to end on a tiny input: the table has every column and variant (no timing)."""

from __future__ import annotations

import pytest

from uniformer.cli import main

TINY = ["--model", "uniformer_small_k400_16x4", "--img-size", "32", "--num-frames", "2", "--repeats", "1"]
COLUMNS = "| variant | {unit} (median) | spread (min-max) | clips/s |"


def _table_rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_inference_table_lists_plain_and_optimized_variants(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", *TINY]) == 0
    out = capsys.readouterr().out
    assert COLUMNS.format(unit="ms/view") in out and "GMAC/s | peak extra MB | vs plain |" in out
    rows = _table_rows(out)
    assert list(rows) == ["plain fp32 (official formulation)", "optimized fp32", "optimized bf16"]
    assert rows["plain fp32 (official formulation)"][-1] == "1.00x"
    assert all(float(cells[0]) > 0 and cells[-1].endswith("x") for cells in rows.values())
    assert "optimized fp32: max |logit error| / max |logit| =" in out


def test_training_table_compares_checkpointing(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", "--train", "--batch-size", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "training step (fwd + bwd + AdamW)" in out and COLUMNS.format(unit="ms/step per clip") in out
    assert "| peak extra MB (step) | peak tensor MB (step) | vs plain |" in out
    rows = _table_rows(out)
    # no public API gives a per-call peak on a CPU: the columns say "not measured" rather than a made-up number
    assert all(len(cells) == 7 and cells[4] == cells[5] == "-" for cells in rows.values())
    assert list(rows) == [
        "plain fp32 (official formulation)",
        "fast (SDPA + channels-last)",
        "fast + activation checkpointing",
        "fast + bf16 autocast",
    ]


def test_train_rejects_inference_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", "--train", "--dtype", "bf16", *TINY]) == 2
    assert "--train" in capsys.readouterr().err
