"""The loader benchmark (``benchmarks/loader.py``) on tiny inputs: every source yields the recipe's clips; not timed."""

from __future__ import annotations

from benchmarks.loader import PUBLISHED_CLIPS_PER_S, Row, run, table


def test_every_source_runs_and_the_table_gives_cores_per_gpu() -> None:
    rows = run(videos=4, frames=24, size=(64, 96), rounds=1, clips=2, s3=False, log=lambda _: None)
    measured = {row.source: row for row in rows if isinstance(row, Row)}
    assert {"files", "shards", "files, no RandAugment"} <= set(measured)
    assert all(len(row.seconds) == 1 and row.clips_per_s > 0 for row in measured.values())
    text = table(rows)
    files = measured["files"]
    assert f"| files | {files.clips_per_s:.2f} |" in text
    assert f"| {PUBLISHED_CLIPS_PER_S / files.clips_per_s:.1f} |" in text
    assert round(PUBLISHED_CLIPS_PER_S, 1) == 19.1
