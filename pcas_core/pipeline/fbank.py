"""Stage ``fbank`` (docs/avsbench.md §4): the features of every video's audio
track by ``fbank.front_end`` (the AST-recipe Kaldi fbank, or the aisfx log-mel), for the ``fbank``
store."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from pcas_core.audio.fbank import load_wave
from pcas_core.audio.front_end import front_end_features
from pcas_core.data.dataset import AVSData
from pcas_core.params import FbankConfig
from pcas_core.runtime.progress import track

__all__ = ["fbank_pass"]


@torch.inference_mode()
def fbank_pass(data: AVSData, cfg: FbankConfig,
               log: logging.Logger | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The ``fbank`` store's rows, one video at a time in metadata order.

    Each track is read mono at ``cfg.sample_rate`` Hz (resampled when it has another rate,
    zero-padded when shorter than the clip: see :func:`pcas_core.audio.fbank.load_wave`).
    Progress goes to ``log`` (:mod:`pcas_core.runtime.progress`).

    Yields:
        ``fbank`` (1, frames, bins) float32 features of ``cfg.front_end``
        (:func:`pcas_core.audio.front_end.front_end_features`: AST's normalised fbank of 10 ms
        frames, or aisfx's log-mel of 23.2 ms frames);
        ``n_steps`` (1,) int32, the video's frames (= seconds).
    """
    audio_paths, n_steps = data.audio_tracks()
    for row, path in enumerate(track(audio_paths, total=len(audio_paths), desc="fbank",
                                     unit="video", log=log)):
        wave = load_wave(path, sample_rate=cfg.sample_rate)
        feats = front_end_features(wave, cfg)
        yield {"fbank": feats.numpy()[None], "n_steps": np.asarray(n_steps[row:row + 1])}
