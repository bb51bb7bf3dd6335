"""Pose tracking: ids kept by greedy IoU or OKS matching of the previous frame's people."""

from __future__ import annotations

import pytest
import torch

from uniformer.tasks.pose.predict import draw_people
from uniformer.tasks.pose.tracking import PoseTracker


def _person(x: float, y: float = 10.0, w: float = 20.0, h: float = 40.0) -> dict:
    """A person box ``[x, y, w, h]`` with 17 keypoints spread over it."""
    points = [[x + w * (k % 3) / 2, y + h * (k // 3) / 5, 0.9] for k in range(17)]
    return {"box": [x, y, w, h], "score": 0.9, "keypoints": points}


@pytest.mark.parametrize("metric", ["iou", "oks"])
def test_two_people_moving_apart_keep_their_ids_in_any_order(metric: str) -> None:
    tracker = PoseTracker(metric)
    left_ids, right_ids = set(), set()
    for t in range(8):
        left, right = _person(40 - 3 * t), _person(52 + 3 * t)  # they start overlapping and walk apart
        people = [left, right] if t % 2 else [right, left]  # the prediction's order changes from frame to frame
        tracked = tracker.update(people)
        by_x = {p["box"][0]: p["id"] for p in tracked}
        left_ids.add(by_x[left["box"][0]])
        right_ids.add(by_x[right["box"][0]])
    assert len(left_ids) == len(right_ids) == 1 and left_ids != right_ids


def test_a_newcomer_gets_a_new_id_and_a_vanished_one_is_forgotten() -> None:
    tracker = PoseTracker()
    assert [p["id"] for p in tracker.update([_person(0), _person(100)])] == [0, 1]
    assert [p["id"] for p in tracker.update([_person(200), _person(101)])] == [2, 1]  # x=200 overlaps nobody
    assert [p["id"] for p in tracker.update([])] == []
    assert [p["id"] for p in tracker.update([_person(101)])] == [3]  # one frame away: a new id
    with pytest.raises(ValueError, match="'iou' or 'oks'"):
        PoseTracker("distance")


def test_tracked_people_are_drawn_in_a_colour_each_untracked_ones_in_red() -> None:
    image = torch.zeros(3, 60, 120, dtype=torch.uint8)
    people = [_person(5), _person(70)]
    untracked = draw_people(image, people, [(0, 1)])
    tracked = draw_people(image, PoseTracker().update(people), [(0, 1)])

    def colours(drawn: torch.Tensor, x0: int, x1: int) -> set:
        pixels = drawn[:, :, x0:x1].permute(1, 2, 0).reshape(-1, 3).tolist()
        return {tuple(p) for p in pixels if any(p) and p != [255, 255, 255]}  # the keypoints (limbs are white)

    assert colours(untracked, 0, 60) == colours(untracked, 60, 120) == {(255, 0, 0)}
    left, right = colours(tracked, 0, 60), colours(tracked, 60, 120)
    assert len(left) == len(right) == 1 and left != right
