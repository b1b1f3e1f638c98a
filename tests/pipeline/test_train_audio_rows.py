"""Row bookkeeping between frame tables, per-video audio steps and batches."""

import numpy as np
import pandas as pd
import pytest
import torch

from pcas_core.data.table import VideoRows
from pcas_core.pipeline.train_audio import frame_steps, step_prompts, steps_to_frames


def _frames():
    # video 0 has 3 frames, video 1 has 2 (numbered from 0 as AVSBench does)
    return pd.DataFrame({"video": [0, 0, 0, 1, 1], "frame": [0, 1, 2, 0, 1]})


def test_frame_steps_and_prompt_layout():
    frames = _frames()
    assert frame_steps(frames).tolist() == [0, 1, 2, 0, 1]
    pooled = np.arange(5, dtype=np.float32)[:, None].repeat(2, axis=1)
    prompts = step_prompts(frames, pooled, n_videos=2, max_steps=3)
    assert prompts.shape == (2, 3, 2)
    assert prompts[:, :, 0].tolist() == [[0, 1, 2], [3, 4, 0]]  # video 1 padded with zeros
    with pytest.raises(ValueError, match="max_steps=2"):
        step_prompts(frames, pooled, n_videos=2, max_steps=2)


def test_steps_to_frames_inverts_the_layout():
    frames = _frames()
    per_step = np.array([[10, 11, 12], [20, 21, 22]])
    assert steps_to_frames(per_step, frames).tolist() == [10, 11, 12, 20, 21]


def test_frame_rows_of_a_batch_of_videos():
    rows = VideoRows(_frames())
    assert rows.of(torch.tensor([1, 0])).tolist() == [3, 4, 0, 1, 2]
    with pytest.raises(ValueError, match="in order"):
        VideoRows(pd.DataFrame({"video": [1, 0], "frame": [0, 0]}))
