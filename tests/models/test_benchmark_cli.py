"""``uniformer benchmark model`` end to end on a tiny input: the table has every column and variant (no timing),
and the memory measurement behind its columns."""

from __future__ import annotations

import pytest
import torch

from uniformer.benchmarks.models import BenchmarkTable, Row, _peak_tensor_memory_mb, bf16_agreement
from uniformer.benchmarks.report import _speedup
from uniformer.cli import main

TINY = ["--model", "uniformer_small_k400_16x4", "--img-size", "32", "--num-frames", "2", "--repeats", "1"]
COLUMNS = "| variant | {unit} (median) | spread (min-max) | clips/s |"


def _table_rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_inference_table_lists_plain_and_optimized_variants(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", *TINY]) == 0
    out = capsys.readouterr().out
    assert COLUMNS.format(unit="ms/view") in out and "GMAC/s | peak extra RSS MB | vs plain |" in out
    rows = _table_rows(out)
    assert list(rows) == ["plain fp32 (official formulation)", "optimized fp32", "optimized bf16"]
    assert rows["plain fp32 (official formulation)"][-1] == "1.00x"
    assert all(float(cells[0]) > 0 and cells[-1].endswith("x") for cells in rows.values())
    assert "optimized fp32: max |logit error| / max |logit| =" in out


def test_training_table_compares_checkpointing(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", "--train", "--batch-size", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "training step (fwd + bwd + AdamW)" in out and COLUMNS.format(unit="ms/step per clip") in out
    assert "| peak extra RSS MB (step) | peak tensor MB (step) | vs plain |" in out
    rows = _table_rows(out)
    assert all(len(cells) == 7 and float(cells[5]) > 0 for cells in rows.values())
    assert list(rows) == [
        "plain fp32 (official formulation)",
        "fast (SDPA + channels-last)",
        "fast + activation checkpointing",
        "fast + bf16 autocast",
    ]


def test_train_rejects_inference_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", "model", "--train", "--dtype", "bf16", *TINY]) == 2
    assert "--train" in capsys.readouterr().err


def test_peak_tensor_memory_counts_what_tensors_hold_at_once() -> None:
    mib = 2**20 // 4  # float32 elements per MiB

    def work() -> None:
        a = torch.ones(8 * mib)
        b = torch.ones(4 * mib)
        del a
        c = torch.ones(6 * mib)  # 10 MiB held now, below the 12 MiB held with a and b
        del b, c

    assert _peak_tensor_memory_mb(work, torch.device("cpu")) == pytest.approx(12, abs=0.01)


def test_bf16_agreement_reads_the_same_features_with_the_model_head_and_a_centred_head() -> None:
    result = bf16_agreement(samples=8, batch_size=4, calibration=8, img_size=32, num_frames=2)
    assert result["samples"] == 8 and result["feature_spread"] > 0
    model, centred = result["model"], result["centred"]
    for entry in (model, centred):
        assert 0 <= entry["top1_agreement"] <= 1 and 0 < entry["max_rel_logit_error"] < 0.5
    # standardised features spread the decisions over the classes; the random head does not
    assert centred["distinct_fp32_top1"] >= 6 > model["distinct_fp32_top1"]


def test_a_missed_speedup_target_says_when_it_is_above_the_ceiling() -> None:
    # plain: 40 GMAC in 500 ms = 80 GMAC/s; 2x would need 160 GMAC/s
    table = BenchmarkTable("t", [Row("plain", [500.0], 1, 40.0), Row("fast", [400.0], 1, 40.0)])
    assert _speedup("x", table, "fast", 2, 112) == (
        "| x | 1.25x (needs 160.0 GMAC/s, above the measured 112.0 GMAC/s matrix-product ceiling) | NOT met |"
    )
    assert _speedup("x", table, "fast", 2, 200) == "| x | 1.25x | NOT met |"
    assert _speedup("x", table, "fast", 1.2, 112) == "| x | 1.25x | met |"
