"""Remote dataset roots, read through fsspec from real servers on 127.0.0.1: an HTTP file server and moto's
S3-compatible server. A run from either gives the per-step losses of the same run from local files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from uniformer.data import read_frames, read_video_list, video_info
from uniformer.data.remote import is_url, join


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 4 videos of 16 frames at 32 px (3 train + 1 val each)."""
    from uniformer.data import synthesize

    root = tmp_path_factory.mktemp("small")
    synthesize(root, num_classes=2, videos_per_class=4, num_frames=16, size=32, val_fraction=0.25, seed=1)
    return root


@pytest.fixture(scope="module")
def roots(small_set: Path, http_server: Callable[[Path], str], s3_server: Callable[[Path, str], str]) -> dict:
    return {"local": str(small_set), "http": http_server(small_set), "s3": s3_server(small_set, "videos")}


def test_urls_are_told_from_paths_and_joined() -> None:
    assert is_url("s3://b/k") and is_url("filecache::s3://b/k") and is_url("http://h/x")
    assert not is_url("/data/k400") and not is_url("C:/data") and not is_url("relative/dir")
    assert join("s3://b/k400/", "train/a.mp4") == "s3://b/k400/train/a.mp4"
    assert join("http://h:1/root", "a.mp4") == "http://h:1/root/a.mp4"
    assert join("/data", "s3://other/a.mp4") == "s3://other/a.mp4"


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_remote_videos_decode_as_the_local_files(roots: dict, kind: str) -> None:
    local = read_video_list("kinetics", roots["local"], list_file=f"{roots['local']}/train.txt")
    remote = read_video_list("kinetics", roots[kind], list_file=f"{roots[kind]}/train.txt")
    assert len(remote) == len(local) == 6
    for here, there in zip(local.records, remote.records, strict=True):
        assert there.path.startswith(roots[kind]) and there.label == here.label
        assert video_info(there.path).num_frames == video_info(here.path).num_frames == 16
        indices = [0, 5, 5, 15, 2]
        assert torch.equal(read_frames(there.path, indices), read_frames(here.path, indices))


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_missing_remote_file_is_an_error_naming_the_url(roots: dict, kind: str) -> None:
    url = f"{roots[kind]}/videos/nothing.mp4"
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        read_frames(url, [0])


def test_training_from_http_and_s3_gives_the_local_losses(
    roots: dict, tiny_run: Callable[..., list[dict]], tmp_path: Path
) -> None:
    def losses(kind: str, workers: int) -> list[float]:
        run = ["data.val_list=null", "trainer.batch_size=2", "trainer.max_epochs=1", "seed=5"]
        records = tiny_run(tmp_path / kind, f"data.root={roots[kind]}", f"data.num_workers={workers}", *run)
        return [r["loss"] for r in records if r["kind"] == "step"]

    local = losses("local", 0)
    assert len(local) == 3
    assert losses("http", 0) == local
    assert losses("s3", 2) == local


def test_filecache_root_reads_once_then_from_the_local_copy(roots: dict, tmp_path: Path, monkeypatch) -> None:
    import fsspec.config

    # what FSSPEC_FILECACHE_CACHE_STORAGE sets when fsspec is imported (here it was imported by earlier tests)
    monkeypatch.setitem(fsspec.config.conf, "filecache", {"cache_storage": str(tmp_path / "cache")})
    url = f"filecache::{roots['http']}/videos/moving_left/moving_left_0000.mp4"
    local = f"{roots['local']}/videos/moving_left/moving_left_0000.mp4"
    assert torch.equal(read_frames(url, [0, 7]), read_frames(local, [0, 7]))
    cached = [p for p in (tmp_path / "cache").iterdir() if p.name != "cache"]
    assert len(cached) == 1 and cached[0].read_bytes() == Path(local).read_bytes()
