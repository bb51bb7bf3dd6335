"""The commands of the "Training at Kinetics scale" page, run verbatim on tiny generated data: prepare, list,
shard, upload to an S3-compatible server on 127.0.0.1, and train there with two processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "scale.md"
TINY = (
    "model.pretrained=null model.overrides.depth=[1,1,1,1] model.overrides.embed_dim=[16,32,64,128] "
    "model.overrides.head_dim=16 data.num_frames=4 data.stride=2 data.crop_size=32 data.num_workers=1 "
    "trainer.batch_size=4 trainer.max_epochs=1 trainer.precision=fp32 trainer.progress=false trainer.tensorboard=false"
)


def _commands() -> str:
    found = re.findall(r"^<!-- test: scale -->\n```bash\n(.*?)^```$", PAGE.read_text(), re.S | re.M)
    assert len(found) == 1, f"{PAGE}: expected one <!-- test: scale --> bash block"
    return found[0]


def test_the_pages_commands_prepare_shard_upload_and_train_with_two_processes(
    tmp_path: Path, s3_server: Callable[[Path, str], str]
) -> None:
    from uniformer.data import synthesize

    synthesize(tmp_path / "synth", num_classes=2, videos_per_class=5, num_frames=16, size=32, val_fraction=0.2)
    raw = tmp_path / "raw"
    for split, names in (("train", range(4)), ("val", [4])):
        for motion in ("moving_right", "moving_left"):
            (raw / split / motion).mkdir(parents=True)
            for i in names:
                name = f"{motion}_{i:04d}.mp4"
                shutil.copy(tmp_path / "synth" / "videos" / motion / name, raw / split / motion / name)
    (raw / "train" / "moving_left" / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "empty").mkdir()
    bucket = s3_server(tmp_path / "empty", "scale")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "src"),
        "OMP_NUM_THREADS": "1",
        "RAW": str(raw),
        "DATA": str(tmp_path / "data"),
        "SHORT_SIDE": "32",
        "SHARDS": str(tmp_path / "shards"),
        "SHARD_SIZE": "8K",
        "BUCKET": bucket,
        "NODES": "1",
        "GPUS_PER_NODE": "2",
        "HEAD": "127.0.0.1",
        "RUNS": str(tmp_path / "runs"),
        "EXTRA": TINY,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _commands()], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "data" / "train.json").read_text())
    assert [Path(f["path"]).name for f in report["failed"]] == ["broken.mp4"] and len(report["written"]) == 8
    index = json.loads((tmp_path / "shards" / "train" / "index.json").read_text())
    assert len(index["samples"]) == 8 and len(index["shards"]) > 1
    records = [json.loads(line) for line in (tmp_path / "runs" / "k400_s16" / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"]
    assert len(epoch) == 1 and "2 process(es)" in done.stderr
