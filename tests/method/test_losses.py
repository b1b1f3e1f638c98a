"""Losses behave as theory says on hand-made inputs."""

import math

import pytest
import torch

from pcas_core.method.losses import cmc_loss, label_consistency, pool_frames, video_bce


def test_pool_frames_max_and_mean_by_hand():
    logits = torch.tensor([[1.0, -1.0], [3.0, -2.0], [0.0, 5.0]])
    video = torch.tensor([0, 0, 1])
    assert torch.equal(pool_frames(logits, video, 2, "max"), torch.tensor([[3.0, -1.0], [0.0, 5.0]]))
    assert torch.allclose(pool_frames(logits, video, 2, "mean"), torch.tensor([[2.0, -1.5], [0.0, 5.0]]))


def test_pool_frames_rejects_video_without_frames_and_bad_mode():
    with pytest.raises(ValueError, match="at least one frame"):
        pool_frames(torch.zeros(2, 3), torch.tensor([0, 0]), 2)
    with pytest.raises(ValueError, match="unknown frame pooling"):
        pool_frames(torch.zeros(2, 3), torch.tensor([0, 1]), 2, "sum")


def test_video_bce_matches_formula():
    logits, labels = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.e ** 2)) / 2
    assert video_bce(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_label_consistency_by_hand():
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert torch.equal(label_consistency(labels),
                       torch.tensor([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]]))


def test_cmc_is_near_zero_when_aligned_and_large_when_swapped():
    eye = torch.eye(4)
    labels = torch.eye(4)  # every item its own class: only the diagonal is positive
    aligned = cmc_loss(eye, eye, eye, labels, temperature=0.05)
    swapped = cmc_loss(eye, eye.roll(1, dims=0), eye.roll(1, dims=0), labels, temperature=0.05)
    assert aligned.item() < 1e-6
    assert swapped.item() > 10.0


def test_cmc_ignores_items_without_labels():
    emb = torch.eye(3)
    labels = torch.tensor([[1.0, 0], [0, 1], [0, 0]])
    assert cmc_loss(emb, emb, emb, labels, temperature=0.05).item() < 1e-6
