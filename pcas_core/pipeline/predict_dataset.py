"""`pcas predict --root`: the trained models (:func:`pcas_core.pipeline.predict.load_models`)
on the test split of any folder that ``data.root`` accepts, scored as `evaluate` scores its own
test split (:func:`score_dataset`); a head that hears gets the audio encoder's output of each
frame (:func:`dataset_audio`).
"""

from __future__ import annotations

import numpy as np
import torch

from pcas_core.data.dataset import AVSData
from pcas_core.evaluation.baselines import background_masks
from pcas_core.evaluation.scoring import Prediction, Scores, metrics_file, scored_frames
from pcas_core.models.heads import needs_audio
from pcas_core.params import FbankConfig, PredictConfig
from pcas_core.pipeline.fbank import fbank_pass
from pcas_core.pipeline.inference import CRF, padded_prediction, predict_test_split
from pcas_core.pipeline.predict import TrainedModels, check_fbank_params
from pcas_core.pipeline.train_audio import encode_steps, frame_steps, step_prompts
from pcas_core.pipeline.train_visual import visual_pass
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import concat_rows

__all__ = ["dataset_audio", "score_dataset"]


def dataset_audio(models: TrainedModels, data: AVSData, fbank: FbankConfig, *,
                  batch_videos: int, env: RunEnv) -> tuple[np.ndarray, np.ndarray]:
    """The audio encoder on every video of ``data``, as the ``fbank`` and ``train_audio`` stages
    make the ``audio`` store: the fbank of each track (:func:`pcas_core.pipeline.fbank.fbank_pass`),
    the stage-1 v_t as prompts, the encoder's step tokens and logits at each frame's step.

    Returns:
        ``(tokens (M, D), logits (M, C))`` float32 per frame, in frame-table order; videos are
        encoded ``batch_videos`` at a time (memory does not grow with the dataset).

    Raises:
        ValueError: a video longer than the encoder's ``max_steps``, or fbank params that differ
            from the encoder's (:func:`pcas_core.pipeline.predict.check_fbank_params`).
    """
    check_fbank_params(models, fbank)
    frames, n_videos = data.frames, len(data.metadata)
    video, step, max_steps = frames["video"].to_numpy(), frame_steps(frames), models.audio.max_steps
    if step.max(initial=0) >= max_steps:
        raise ValueError(f"{data.root}: a video has {step.max() + 1} frames, the audio encoder "
                         f"takes at most max_steps={max_steps}")
    prompts = None
    if models.audio.use_prompts:
        clips = data.clips(models.visual.mean, models.visual.std, num_workers=env.num_workers)
        pooled = concat_rows(visual_pass(models.visual, clips, batch_videos=batch_videos,
                                         env=env))["pooled_patch"]
        prompts = torch.from_numpy(step_prompts(frames, pooled, n_videos, int(max_steps)))
    tracks, tokens, logits = fbank_pass(data, fbank), [], []
    for first in range(0, n_videos, batch_videos):
        rows = [next(tracks) for _ in range(min(batch_videos, n_videos - first))]
        tok, lg = encode_steps(
            models.audio, torch.from_numpy(np.concatenate([r["fbank"] for r in rows])),
            None if prompts is None else prompts[first:first + len(rows)],
            torch.from_numpy(np.concatenate([r["n_steps"] for r in rows]).astype(np.int64)),
            batch_videos=len(rows), env=env)
        here = (video >= first) & (video < first + len(rows))
        tokens.append(tok[video[here] - first, step[here]])
        logits.append(lg[video[here] - first, step[here]])
    return np.concatenate(tokens), np.concatenate(logits)


def score_dataset(models: TrainedModels, data: AVSData, cfg: PredictConfig, *,
                  fbank: FbankConfig, official_batch_videos: int, env: RunEnv,
                  crf: CRF | None = None) -> dict:
    """The models on the test split of another dataset, scored as `evaluate` scores its own:
    the same prediction (:func:`pcas_core.pipeline.inference.predict_test_split`, a head that
    hears getting the encoder's audio of each frame, :func:`dataset_audio`) and the same metrics
    file (:func:`pcas_core.evaluation.scoring.metrics_file`, clean and official modes), beside
    predicting background everywhere.

    Args:
        data: an opened dataset whose ``img_size`` is the models' frame size.
        cfg: the ``predict`` section (videos and frames per batch).
        fbank: the ``fbank`` section (read only when the head hears).
        official_batch_videos: videos per official S4/MS3 test batch (``scoring``).
        crf: as in :func:`pcas_core.pipeline.predict.predict_clip`.

    Returns:
        The metrics dict, plus ``root``.

    Raises:
        ValueError: the dataset's frame size differs from the models', or it has no test split or
            a test frame without mask (names the root); as :func:`dataset_audio`.
    """
    if data.img_size != models.img_size:
        raise ValueError(f"{data.root}: opened at {data.img_size} px, the models take "
                         f"{models.img_size} px frames")
    test, kind = data.split("test"), data.dataset
    scored = scored_frames(test.frames, require_all=True)  # every frame: rows of test.frames
    audio = None
    if needs_audio(models.head, models.inputs):
        tokens, logits = dataset_audio(models, test, fbank, batch_videos=cfg.batch_videos, env=env)
        audio = models.head_audio(logits, tokens)
    _, pad_mask, _ = padded_prediction(models.aligned, models.head, test.img_size,
                                       features=models.features, env=env, audio=audio, crf=crf)
    method = Scores(kind, batch_videos=official_batch_videos, padded_mask=pad_mask, subsets=True)
    background = Scores(kind, batch_videos=official_batch_videos)
    for chunk in predict_test_split(models.aligned, models.head, test, features=models.features,
                                    batch_videos=cfg.batch_videos,
                                    batch_frames=cfg.batch_frames, env=env, audio=audio,
                                    crf=crf):
        gts = test.masks(np.arange(chunk.rows.start, chunk.rows.stop))
        frames = scored.iloc[chunk.rows].reset_index(drop=True)
        method.update(Prediction(chunk.masks, chunk.foreground), gts, frames)
        background.update(Prediction(background_masks(len(gts), gts.shape[1:])), gts, frames)
    result = metrics_file(kind, "test", method.compute(),
                          {"baseline.background": background.compute()})
    return {"root": str(data.root), **result}
