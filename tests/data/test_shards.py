"""WebDataset shards: written with the webdataset library, read by byte range in the engine's data order, so a
run from shards (local or on the loopback S3 server) equals the run from the original files step for step, an
epoch over 2 ranks x 2 workers sees every sample once, and a resume in the middle of an epoch is exact."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from uniformer.data import collate_videos, read_video_list
from uniformer.data.datasets import build_video_dataset
from uniformer.data.shards import stream_samples, write_shards

RUN = ["trainer.batch_size=4", "trainer.max_epochs=2", "seed=7"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 4 videos of 16 frames at 32 px (12 train, 4 val), and their shards (several per split)."""
    from uniformer.data import synthesize

    root = tmp_path_factory.mktemp("files")
    synthesize(root, num_classes=4, videos_per_class=4, num_frames=16, size=32, val_fraction=0.25, seed=2)
    for split in ("train", "val"):
        videos = read_video_list("kinetics", root, list_file=root / f"{split}.txt", labels_file=root / "classes.txt")
        write_shards(videos, root / "shards" / split, max_bytes=8 << 10)
    return root


def test_shards_are_standard_webdataset_and_the_index_points_at_each_video(dataset: Path, tmp_path: Path) -> None:
    videos = read_video_list("kinetics", dataset, list_file=dataset / "train.txt", labels_file=dataset / "classes.txt")
    index = json.loads((dataset / "shards" / "train" / "index.json").read_text())
    assert len(index["shards"]) > 2 and index["classes"] == videos.classes
    shards = [str(dataset / "shards" / "train" / name) for name in index["shards"]]
    streamed = list(stream_samples(shards))
    assert [s["__key__"] for s in streamed] == [f"{i:08d}" for i in range(12)]
    packed = read_video_list("webdataset", "", list_file=dataset / "shards" / "train" / "index.json")
    for original, sample, record in zip(videos.records, streamed, packed.records, strict=True):
        data = Path(original.path).read_bytes()
        assert sample["mp4"] == data and int(sample["cls"]) == original.label == record.label
        member = record.member
        with open(record.path, "rb") as handle:
            handle.seek(member.offset)
            assert handle.read(member.size) == data
        assert json.loads(sample["json"])["path"] == original.path


def test_unreadable_sources_are_reported_and_left_out(dataset: Path, tmp_path: Path) -> None:
    videos = read_video_list("kinetics", dataset, list_file=dataset / "train.txt")
    (tmp_path / "empty.mp4").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text((dataset / "train.txt").read_text() + f"{tmp_path / 'empty.mp4'} 0\n{tmp_path / 'gone.mp4'} 1\n")
    videos = read_video_list("kinetics", dataset, list_file=listing)
    report = write_shards(videos, tmp_path / "out")
    assert report.samples == 12 and len(report.shards) == 1
    assert [(Path(p).name, r.split(":")[0]) for p, r in report.failed] == [
        ("empty.mp4", "empty file (0 bytes)"),
        ("gone.mp4", "FileNotFoundError"),
    ]


def test_malformed_index_is_an_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "index.json"
    bad.write_text('{"samples": []}')
    with pytest.raises(ValueError, match=r"index.json: not a shard index"):
        read_video_list("webdataset", tmp_path, list_file=bad)


@pytest.mark.parametrize("global_batch", [4, 8], ids=["dividing", "with-remainder"])
def test_an_epoch_over_two_ranks_and_two_workers_sees_every_sample_once(dataset: Path, global_batch: int) -> None:
    from uniformer.engine.loader import BatchPlan, EpochSampler, SeededItems

    shards = build_video_dataset(
        "webdataset",
        "",
        list_file=dataset / "shards" / "train" / "index.json",
        num_frames=4,
        stride=2,
        crop_size=32,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
    )
    plan = BatchPlan(global_batch=global_batch, world_size=2, accum_steps=1, micro_batch=global_batch // 2)
    seen: Counter[str] = Counter()
    for rank in (0, 1):  # 12 samples: 3 steps of 4, or 1 step of 8 and 4 more kept by drop_last=False
        sampler = EpochSampler(len(shards), plan, rank=rank, seed=3, drop_last=False)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(
            SeededItems(shards, 3), batch_sampler=sampler, num_workers=2, collate_fn=collate_videos
        )
        for batch in loader:
            seen.update(batch["path"])
    assert len(seen) == 12 and set(seen.values()) == {1}
    assert all(".tar/000000" in name for name in seen)


def _lists(root: str, train_list: str, val_list: str, *more: str) -> list[str]:
    return [f"data.root={root}", f"data.train_list={train_list}", f"data.val_list={val_list}", *RUN, *more]


def test_training_from_shards_local_and_on_s3_equals_training_from_files(
    dataset: Path, s3_server: Callable[[Path, str], str], tiny_run: Callable[..., list[dict]], tmp_path: Path
) -> None:
    files = tiny_run(tmp_path / "files", *_lists(str(dataset), "train.txt", "val.txt", "data.num_workers=0"))
    assert sum(r["kind"] == "step" for r in files) == 6 and files[-1]["kind"] == "epoch"
    shards = _lists(str(dataset / "shards"), "train/index.json", "val/index.json", "data.format=webdataset")
    local = tiny_run(tmp_path / "shards", *shards)
    assert local == files  # per-step losses, and the validation metrics of each epoch
    bucket = s3_server(dataset / "shards", "shards")
    remote = tiny_run(tmp_path / "s3", *_lists(bucket, "train/index.json", "val/index.json", "data.format=webdataset"))
    assert remote == files


def test_resume_in_the_middle_of_an_epoch_of_shards_is_exact(
    dataset: Path, tiny_run: Callable[..., list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uniformer.engine import TrainingInterrupted
    from uniformer.engine.train import Trainer

    args = _lists(str(dataset / "shards"), "train/index.json", "null", "data.format=webdataset", "data.num_workers=2")
    straight = tiny_run(tmp_path / "straight", *args)
    original = Trainer._step

    def interrupt_at_step_4(self: Trainer, batches):  # epoch 2, after its first step
        if self.state.step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C or a scheduler's preemption signal does
        return original(self, batches)

    monkeypatch.setattr(Trainer, "_step", interrupt_at_step_4)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 5"):
        tiny_run(tmp_path / "resumed", *args)
    monkeypatch.setattr(Trainer, "_step", original)
    assert tiny_run(tmp_path / "resumed", *args, "trainer.resume=auto") == straight


def test_data_check_decodes_every_video_inside_the_shards(dataset: Path) -> None:
    from uniformer.data import check_videos

    report = check_videos(dataset / "shards" / "train" / "index.json", format="webdataset", workers=1)
    assert len(report.files) == 12 and report.count("ok") == 12
    assert all(".tar/000000" in entry.path for entry in report.files)
