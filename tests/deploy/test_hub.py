"""The Hub layout: save_pretrained writes timm's folder, create_model(pretrained="local-dir:...") reads it exactly."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import timm
import torch
from safetensors.torch import save_file

import uniformer
from uniformer.models.checkpoint import CheckpointError, read_checkpoint
from uniformer.models.segmentor import build_segmentor
from uniformer.tasks.classification import TASK

TINY_IMAGE = dict(depth=(1, 1, 1, 1), embed_dim=(32, 64, 128, 256), head_dim=32)


def test_image_round_trip_is_exact_and_timm_reads_it(tmp_path):
    torch.manual_seed(0)
    model = uniformer.create_model("uniformer_small", num_classes=3, **TINY_IMAGE).eval()
    uniformer.save_pretrained(model, tmp_path, class_names=["cat", "dog", "owl"], metrics={"Top-1 (held-out)": "90 %"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "uniformer_small" and config["num_classes"] == 3
    assert config["label_names"] == ["cat", "dog", "owl"]
    assert config["model_args"] == {"depth": [1, 1, 1, 1], "embed_dim": [32, 64, 128, 256], "head_dim": 32}
    assert config["pretrained_cfg"]["input_size"] == [3, 224, 224] and config["clip"]["crop_pct"] == 0.875

    loaded = uniformer.create_model("uniformer_small", pretrained=f"local-dir:{tmp_path}").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        # timm's own loader reads the same folder (image models are registered with timm)
        assert torch.equal(timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()(x), model(x))
    assert loaded.zoo_cfg["classes"] == ["cat", "dog", "owl"]

    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "Top-1 (held-out): 90 %" in card
    assert f'pretrained="hf-hub:ORG/{tmp_path.name}"' in card
    assert "Top-1 (published)" not in card  # a 3-class head is not the released classifier


def test_video_round_trip_keeps_the_clip(tmp_path):
    torch.manual_seed(0)
    model = uniformer.create_model("uniformer_tiny_motion").eval()
    clip = {"num_frames": 4, "stride": 2, "clips": 3, "crop_size": 96}
    uniformer.save_pretrained(model, tmp_path, clip=clip)
    again = tmp_path / "again"
    loaded = uniformer.create_model("uniformer_tiny_motion", pretrained=f"local-dir:{tmp_path}").eval()
    uniformer.save_pretrained(loaded, again)  # the clip travels with the model, not only through the folder
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    file = read_checkpoint(again)  # a saved folder is also a --checkpoint
    spec = TASK.prediction_setup(uniformer.model_info("uniformer_tiny_motion"), loaded, file, None).spec
    assert (spec.num_frames, spec.stride, spec.clips, spec.crop_size, spec.sampling) == (4, 2, 3, 96, "dense")
    assert file.class_names == uniformer.model_info("uniformer_tiny_motion").labels
    config = json.loads((again / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 4, 96, 96]
    card = (again / "README.md").read_text()
    assert "pipeline_tag: video-classification" in card and "4 frames x stride 2 (dense), 96 px" in card


def test_published_metrics_on_the_card_of_a_released_architecture(tmp_path):
    with torch.device("meta"):
        model = uniformer.create_model("uniformer_small")
    model = model.to_empty(device="cpu")
    uniformer.save_pretrained(model, tmp_path, repo_name="me/uniformer-s")
    card = (tmp_path / "README.md").read_text()
    assert "Top-1 (published): 82.9 % (1 clips x 1 crops)" in card and "- imagenet-1k" in card
    assert 'pretrained="hf-hub:me/uniformer-s"' in card


def test_wrong_architecture_and_bad_folders_are_refused(tmp_path):
    model = uniformer.create_model("uniformer_tiny_motion")
    uniformer.save_pretrained(model, tmp_path)
    with pytest.raises(ValueError, match="holds weights of uniformer_tiny_motion, not of uniformer_small"):
        uniformer.create_model("uniformer_small", pretrained=f"local-dir:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        uniformer.create_model("uniformer_small", pretrained=f"local-dir:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text('{"num_classes": 8}')
    with pytest.raises(CheckpointError, match="config.json: field 'architecture'"):
        read_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="Unknown model source 'http'"):
        uniformer.create_model("uniformer_small", pretrained="http://example.com/x")
    with pytest.raises(ValueError, match="3 class names for a 8-class model"):
        uniformer.save_pretrained(model, tmp_path, class_names=["a", "b", "c"])
    # an inference copy (BatchNorms folded away) would write a folder nothing can load
    with pytest.raises(CheckpointError, match="(?s)does not fit UniFormer:.*20 missing keys: blocks1.0.norm1.bias"):
        uniformer.save_pretrained(uniformer.optimize_for_inference(model), tmp_path / "fast")
    assert not (tmp_path / "fast").exists()


def test_push_to_hub_uploads_the_saved_folder(tmp_path):
    """The Hub is not reachable here: HfApi is mocked, and the test checks what would be uploaded."""
    model = uniformer.create_model("uniformer_tiny_motion")
    uploaded = {}

    def upload_folder(repo_id, folder_path, **kwargs):
        uploaded.update(repo_id=repo_id, files=sorted(p.name for p in Path(folder_path).iterdir()))
        uploaded["card"] = (Path(folder_path) / "README.md").read_text()
        return "commit"

    with mock.patch("uniformer.deploy.hub.HfApi") as api:
        api.return_value.create_repo.return_value.repo_id = "me/motion"
        api.return_value.upload_folder.side_effect = upload_folder
        assert uniformer.push_to_hub(model, "motion", private=True) == "commit"
    api.return_value.create_repo.assert_called_once_with("motion", private=True, exist_ok=True)
    assert uploaded["repo_id"] == "me/motion"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert 'pretrained="hf-hub:me/motion"' in uploaded["card"]


def test_hf_hub_source_reads_the_same_files(tmp_path):
    """``hf-hub:ORG/REPO@REV`` fetches config.json and model.safetensors (mocked: no Hub here) and reads them."""
    model = uniformer.create_model("uniformer_tiny_motion").eval()
    uniformer.save_pretrained(model, tmp_path)
    calls = []

    def download(repo_id, filename, revision=None, local_files_only=False):
        calls.append((repo_id, filename, revision))
        return str(tmp_path / filename)

    with mock.patch("uniformer.models.download.hf_hub_download", side_effect=download):
        loaded = uniformer.create_model("uniformer_tiny_motion", pretrained="hf-hub:me/motion@v1").eval()
    assert calls == [("me/motion", "config.json", "v1"), ("me/motion", "model.safetensors", "v1")]
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_detector_with_its_own_options_round_trips_through_the_hub_layout(tmp_path):
    # detector options (test sizes) travel in config.json next to the backbone's, and the outputs are identical
    tiny = dict(depth=(1, 1, 2, 1), embed_dim=(16, 32, 48, 64), head_dim=16, attn_mode="hybrid", window_size=7)
    name = "uniformer_small_h14_mask_rcnn_coco_1x"
    model = uniformer.create_model(name, num_classes=3, **tiny, min_size=(96,), max_size=128).eval()
    uniformer.save_pretrained(model, tmp_path, class_names=["a", "b", "c"])
    again = uniformer.create_model(name, pretrained=f"local-dir:{tmp_path}").eval()
    assert (tuple(again.transform.min_size), again.transform.max_size) == ((96,), 128)
    images = [torch.rand(3, 100, 120)]
    with torch.no_grad():
        ours, theirs = model(images)[0], again(images)[0]
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


TINY_DENSE = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16)


def _card_tag(folder: Path) -> str:
    return next(line for line in (folder / "README.md").read_text().splitlines() if line.startswith("pipeline_tag:"))


def test_a_segmentor_with_reduced_heads_round_trips_and_its_card_names_the_task(tmp_path):
    # the demo's segmentor: a reduced backbone and 32-wide heads, which only the weights' shapes record
    torch.manual_seed(0)
    trained = build_segmentor("upernet", 6, TINY_DENSE, channels=32, aux_channels=32)
    save_file(trained.state_dict(), tmp_path / "trained.safetensors")
    name = "uniformer_small_upernet_ade20k"
    model = uniformer.create_model(name, checkpoint_path=tmp_path / "trained.safetensors", **TINY_DENSE).eval()
    uniformer.save_pretrained(model, tmp_path / "hub")
    loaded = uniformer.create_model(name, pretrained=f"local-dir:{tmp_path / 'hub'}").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert _card_tag(tmp_path / "hub") == "pipeline_tag: image-segmentation"
    assert json.loads((tmp_path / "hub" / "config.json").read_text())["num_classes"] == 6


def test_a_pose_model_round_trips_with_its_head_width_and_keypoint_names(tmp_path):
    name = "uniformer_small_topdown_coco_256x192"
    torch.manual_seed(0)
    model = uniformer.create_model(name, **TINY_DENSE, head_channels=32).eval()
    uniformer.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_classes"] == 17 and config["model_args"]["head_channels"] == 32
    assert config["label_names"] == uniformer.model_info(name).labels
    loaded = uniformer.create_model(name, pretrained=f"local-dir:{tmp_path}").eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert _card_tag(tmp_path) == "pipeline_tag: keypoint-detection"
    assert "**Keypoints:** 17" in (tmp_path / "README.md").read_text()


def test_the_card_of_each_task_carries_the_hubs_pipeline_tag(tmp_path):
    names = {
        "uniformer_small": "image-classification",
        "uniformer_tiny_motion": "video-classification",
        "uniformer_small_fpn_ade20k": "image-segmentation",
        "uniformer_small_h14_mask_rcnn_coco_1x": "object-detection",
        "uniformer_small_topdown_coco_256x192": "keypoint-detection",
    }
    for name, tag in names.items():
        with torch.device("meta"):
            model = uniformer.create_model(name)
        uniformer.save_pretrained(model.to_empty(device="cpu"), tmp_path / name)
        assert _card_tag(tmp_path / name) == f"pipeline_tag: {tag}", name
    card = (tmp_path / "uniformer_small_h14_mask_rcnn_coco_1x" / "README.md").read_text()
    assert "box AP (published): 45.6" in card and "mask AP (published): 41.6" in card
    assert "AP (published): 74.0" in (tmp_path / "uniformer_small_topdown_coco_256x192" / "README.md").read_text()
