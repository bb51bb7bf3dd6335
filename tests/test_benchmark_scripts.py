"""The repository's benchmark scripts (``benchmarks/``, run from the repository root): the measurements behind
``benchmarks/RESULTS.md`` are checked on tiny inputs, not timed."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bf16_agreement import bf16_agreement
from benchmarks.detection import PEER as DETECTION_PEER
from benchmarks.detection import run as run_detection
from benchmarks.light import IMAGE_PEERS, VIDEO_PEERS, run_images
from benchmarks.memory import peak_tensor_mb
from benchmarks.pose import run as run_pose
from benchmarks.results import _inference, _speedup
from benchmarks.segmentation import run as run_segmentation
from uniformer.benchmarks import models as benchmark_models
from uniformer.benchmarks.models import BenchmarkTable, Row, native_precisions, paired_speedup


def test_peak_tensor_memory_counts_what_tensors_hold_at_once() -> None:
    mib = 2**20 // 4  # float32 elements per MiB

    def work() -> None:
        a = torch.ones(8 * mib)
        b = torch.ones(4 * mib)
        del a
        c = torch.ones(6 * mib)  # 10 MiB held now, below the 12 MiB held with a and b
        del b, c

    assert peak_tensor_mb(work, torch.device("cpu")) == pytest.approx(12, abs=0.01)


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


def test_the_paired_speedup_compares_rounds_not_medians() -> None:
    # a slow swing in round 2 hits both variants; round by round ours is 2x, 2x, 0.5x faster
    ours, peer = Row("ours", [10.0, 40.0, 30.0], 1, None), Row("peer", [20.0, 80.0, 15.0], 1, None)
    assert paired_speedup(ours, peer) == (2.0, 2)
    with pytest.raises(ValueError):
        paired_speedup(ours, Row("peer", [20.0], 1, None))


def test_bf16_is_left_out_only_where_the_cpu_has_no_native_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"precisions must be some of fp32, bf16; got \['fp16'\]"):
        native_precisions(["fp16"], "test")
    with pytest.raises(ValueError, match=r"got \[\]"):
        native_precisions([], "test")
    monkeypatch.setattr(benchmark_models, "warn_if_cpu_bf16_is_slow", lambda what: False)
    assert native_precisions(["fp32", "bf16"], "test") == (["fp32", "bf16"], False)
    monkeypatch.setattr(benchmark_models, "warn_if_cpu_bf16_is_slow", lambda what: True)
    assert native_precisions(["fp32", "bf16"], "test") == (["fp32"], True)
    with pytest.raises(ValueError, match="only bf16 was asked for"):
        native_precisions(["bf16"], "test")


def test_the_ablation_table_adds_each_fast_path_and_measures_resident_memory() -> None:
    table = _inference(
        "uniformer_small_k400_16x4", ablation=True, img_size=32, num_frames=2, repeats=1, dtypes=("fp32",)
    )
    assert [row.variant for row in table.rows] == [
        "plain fp32 (official formulation)",
        "+ SDPA",
        "+ SDPA + channels-last maps",
        "+ channels-last weights and input",
        "+ BatchNorm folded",
        "optimized fp32",
    ]
    assert "peak extra RSS MB" in table.format() and all(row.peak_mb is not None for row in table.rows)
    errors = [float(note.rsplit("= ", 1)[1].split()[0]) for note in table.notes if "max |logit error|" in note]
    assert len(errors) == 5 and max(errors) < 1e-4  # every fast path computes the plain model's logits


def test_the_segmentation_peer_table_times_uniformer_next_to_deeplabv3() -> None:
    table = run_segmentation(repeats=1, size=64, log=lambda _: None)
    labels = [row.variant for row in table.rows]
    assert (
        labels[0].endswith("plain fp32 (official formulation)") and labels[-1] == "torchvision deeplabv3_resnet50 fp32"
    )
    assert all(row.gmacs_per_view and row.ms_per_view > 0 for row in table.rows)
    fp32 = next(note for note in table.notes if "optimized fp32" in note)
    assert float(fp32.rsplit("= ", 1)[1]) < 1e-4  # the inference path computes the plain segmentor's logits


def test_the_detection_peer_table_times_uniformer_next_to_torchvision_mask_rcnn() -> None:
    table = run_detection(repeats=1, height=64, width=96, precisions=("fp32",), proposals=10, log=lambda _: None)
    labels = [row.variant for row in table.rows]
    assert labels[0].endswith("plain fp32 (official formulation)") and labels[-1] == f"{DETECTION_PEER} fp32"
    assert all(row.gmacs_per_view and row.ms_per_view > 0 for row in table.rows)
    ours, theirs = table.rows[0].gmacs_per_view, table.rows[-1].gmacs_per_view
    assert ours != theirs  # each detector's own count
    features = next(note for note in table.notes if "FPN feature error" in note)
    assert float(features.split("= ")[1].split(";")[0]) < 1e-4 and "backbone found: True" in features
    assert int(features.split("True, ")[1].split()[0]) > 0  # BatchNorms folded inside the detector's backbone
    detections = next(note for note in table.notes if note.startswith("detections per image"))
    counts = [int(entry.rsplit(" ", 1)[1]) for entry in detections.split(": ", 1)[1].split(", ")]
    assert counts == [1, 1, 1]  # a tenth of the 10 proposals for every variant: the mask head ran
    ratio = next(note for note in table.notes if note.startswith("fp32: fastest UniFormer / peer time"))
    assert float(ratio.rsplit("= ", 1)[1]) > 0


def test_the_pose_peer_table_times_uniformer_next_to_simplebaseline_resnet50() -> None:
    table = run_pose(repeats=1, batch_size=2, size=(64, 64), precisions=("fp32",), log=lambda _: None)
    labels = [row.variant for row in table.rows]
    assert labels == [
        "uniformer_small_topdown_coco_256x192 plain fp32 (official formulation)",
        "uniformer_small_topdown_coco_256x192 optimized fp32",
        "SimpleBaseline ResNet-50 (folded, channels-last) fp32",
    ]
    assert all(row.batch_size == 2 and row.gmacs_per_view and row.ms_per_view > 0 for row in table.rows)
    assert table.notes[0].startswith("fp32: UniFormer-S")
    errors = {note.split(":")[0]: float(note.rsplit("= ", 1)[1]) for note in table.notes if "heatmap error" in note}
    assert set(errors) == set(labels[1:])  # the fast paths compute the eager models' heatmaps to float rounding
    assert max(errors.values()) < 1e-4


def test_the_light_peer_tables_time_uniformer_next_to_each_peer_round_by_round() -> None:
    table = run_images(repeats=1, batch_size=1, log=lambda _: None, cpu_time=True)
    labels = [row.variant for row in table.rows]
    assert labels[0].startswith("uniformer_xxs_160 optimized fp32") and len(labels) == 2 + len(IMAGE_PEERS)
    assert all(row.gmacs_per_view and row.ms_per_view > 0 for row in table.rows)
    paired = [note for note in table.notes if "per-round time ratios" in note]
    assert len(paired) == 2 and all(note.count("rounds faster") == len(IMAGE_PEERS) for note in paired)
    assert set(VIDEO_PEERS) == {"r2plus1d_18", "s3d"}


def test_the_memory_benchmark_photo_is_a_4_by_3_jpeg_of_the_pixels_asked_for(tmp_path) -> None:
    from PIL import Image

    from benchmarks.predict_memory import write_photo

    width, height = write_photo(tmp_path / "photo.jpg", 0.03)
    with Image.open(tmp_path / "photo.jpg") as photo:
        assert photo.format == "JPEG" and photo.size == (width, height) == (200, 150)


def test_the_shapes_profile_sorts_operators_by_kind() -> None:
    """Each profiled operator lands in one kind; a tiny fast model's matrix products and fused attention show."""
    from benchmarks.shapes import _kind, profile_shares
    from uniformer import UniFormer

    assert _kind("aten::addmm") == _kind("mkldnn::_linear_pointwise") == "matrix products"
    assert _kind("aten::slow_conv3d_forward") == "convolutions (native im2col)"
    assert _kind("aten::gelu_") == "GELU" and _kind("aten::something_else") == "other"
    torch.manual_seed(0)
    model = UniFormer(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=3).eval()
    shares = profile_shares(model, torch.randn(1, 3, 64, 64))
    assert shares["matrix products"] > 0 and shares["attention kernel"] > 0 and "softmax" not in shares
