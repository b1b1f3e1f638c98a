"""Clip augmentation: one draw for all frames of a clip, reproducible from the generator."""

import pytest
import torch

from pcas_core.data.augment import augment_clip


def test_same_transform_for_every_frame_and_reproducible():
    frame = torch.rand(3, 16, 16)
    clip = frame.expand(4, 3, 16, 16).clone()
    out = augment_clip(clip, generator=torch.Generator().manual_seed(3))
    assert out.shape == clip.shape
    for t in range(1, 4):  # identical frames stay identical: one draw per clip
        torch.testing.assert_close(out[t], out[0])
    again = augment_clip(clip, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, again)
    other = augment_clip(clip, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(out, other)


def test_identity_settings_leave_the_clip_unchanged():
    clip = torch.rand(2, 3, 8, 8)
    out = augment_clip(clip, scale=(1.0, 1.0), flip=0.0, brightness=0.0)
    torch.testing.assert_close(out, clip)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="T, 3, H, W"):
        augment_clip(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="scale"):
        augment_clip(torch.rand(1, 3, 8, 8), scale=(0.0, 1.0))
