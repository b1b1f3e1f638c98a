"""The test-time path of PCAS, once, for the ``evaluate`` stage and for ``pcas predict``.

Per clip of T frames (at most the audio encoder's ``max_steps`` seconds), with no labels:

1. the stage-1 visual classifier encodes each frame: v_t, the TVP prompt (docs/method.md §1);
2. the TVP audio encoder reads the clip's fbank with one prompt per second: step logits s_t,
   audio scores ``sigmoid(s_t)`` (docs/method.md §2);
3. the aligned visual model gives patch tokens and frame logits, visual scores
   ``sigmoid(W_v v_t)`` (docs/method.md §3);
4. the segmentation head turns the patch tokens into a class-index mask (docs/method.md §5); a head
   that hears (:func:`head_audio`) also reads the frame's audio: its vector a_t or sigmoid(s_t)
   (``evaluate.audio_condition``), and K_t = {k : sigmoid(s_t,k) >= theta_a}, outside which its
   foreground logits are -inf (``evaluate.audio_gate``, :func:`pcas_core.models.heads.audio_gate`).

The masks come from :func:`predict_masks` on the head's tokens (steps 3-4): :func:`segment` on a
clip (``pcas predict`` through :func:`pcas_core.pipeline.predict.predict_clip`, which runs the
whole path), :func:`predict_test_split` chunk by chunk on a test split (``evaluate``, the audio from
the ``audio`` store, and ``pcas predict --root``), on the same windows of frames, so both give the
same masks for the same frames, audio and models.

The official AVSS padded frame (:func:`padded_frame`) has no audio (the official test zeroes the
audio features of padded steps): its audio vector is zeros and its K_t is empty, so a gated head
predicts background everywhere on it (:meth:`HeadAudio.silent`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.data.dataset import AVSData
from pcas_core.data.loader import video_loader
from pcas_core.method.crf import refine_kept
from pcas_core.models.heads import HeadInputs, SegmentationHead, audio_gate, check_features
from pcas_core.models.visual import VisualClassifier
from pcas_core.runtime.distributed import batch_count, gather_in_order
from pcas_core.runtime.fit import autocast
from pcas_core.runtime.progress import Progress, track
from pcas_core.runtime.stage import RunEnv

__all__ = ["CRF", "head_input_batches", "head_inputs", "HeadAudio", "sounding_mask", "head_audio",
           "PaddedFrame", "padded_frame", "predict_masks", "segment", "TestChunk",
           "padded_prediction", "predict_test_split"]

#: a dense CRF: ``(image (H, W, 3) uint8, probs (K, H, W) float32) -> refined probs (K, H, W)``
CRF = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _head_input(patch: torch.Tensor, final: torch.Tensor, features: str) -> torch.Tensor:
    """(B, N, D) tokens of layer ``token_layer`` and final layer -> the head input on the CPU."""
    parts = {"patch": [patch], "final": [final], "patch+final": [patch, final]}[features]
    return torch.cat(parts, dim=-1).float().cpu()


@torch.no_grad()
def head_input_batches(model: VisualClassifier, clips: Dataset, *, features: str,
                       batch_videos: int, env: RunEnv, ranks: bool = False,
                       desc: str | None = None,
                       progress: bool = True) -> Iterator[torch.Tensor]:
    """The segmentation head's input tokens of the frames of ``clips``, batch by batch of
    ``batch_videos`` videos in order: each a (B, N, D') float32 tensor on the CPU (B = the
    batch's frames), so a pass over a large split holds one batch. Progress lines (batches
    yielded, so the time the caller spends on each batch counts too) go to ``env.log`` under
    ``desc`` (default ``"<features> tokens"``) unless ``progress`` is False (a caller that
    reports the pass itself).

    Args:
        features: ``"patch"`` (P_t, the tokens of ``token_layer``: (M, N, D)), ``"final"`` (the
            final layer's patch tokens: (M, N, D)) or ``"patch+final"`` (both, concatenated on
            the channel axis: (M, N, 2D); local detail plus context when P_t is an early layer).
        ranks: in a distributed run each process encodes every world-th batch and every
            process gets all batches, in order.

    Raises:
        ValueError: unknown ``features``.
    """
    check_features(features)
    device = env.device
    model.to(device).eval()

    def encoded():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, env.amp):
                patch, _, final = model.forward_features(batch["frames"].to(device))
            yield _head_input(patch, final, features)

    n = batch_count(len(clips), batch_videos)
    batches = gather_in_order(encoded(), n) if ranks else encoded()
    if progress:
        batches = track(batches, total=n, desc=desc or f"{features} tokens", unit="batch",
                        log=env.log)
    yield from batches


def head_inputs(model: VisualClassifier, clips: Dataset, *, features: str, batch_videos: int,
                env: RunEnv, ranks: bool = False) -> torch.Tensor:
    """The segmentation head's input tokens of every frame of ``clips`` in order, on the CPU:
    (M, N, D') float32 (:func:`head_input_batches` joined; for a clip or a small set: a pass over
    a dataset takes the batches).

    Raises:
        ValueError: unknown ``features``.
    """
    return torch.cat(list(head_input_batches(model, clips, features=features,
                                             batch_videos=batch_videos, env=env, ranks=ranks)))


class HeadAudio(NamedTuple):
    """What the segmentation head hears of M frames (:func:`head_audio`).

    Attributes:
        vector: (M, A) float32 audio vector of a conditioned head (A = 0 for a plain head).
        allowed: (M, C) bool, foreground column k may be predicted (K_t with the gate, else all).
        gated: whether ``allowed`` is K_t (the gate) rather than every class.
    """

    vector: torch.Tensor
    allowed: torch.Tensor
    gated: bool

    def rows(self, index: slice | np.ndarray) -> HeadAudio:
        """The same for the frames ``index``."""
        return HeadAudio(self.vector[index], self.allowed[index], self.gated)

    def silent(self, n: int = 1) -> HeadAudio:
        """``n`` frames without audio (the official padded frame): zero vectors, and no class
        allowed by a gate (so the gated head predicts background there)."""
        return HeadAudio(torch.zeros(n, self.vector.shape[1]),
                         torch.full((n, self.allowed.shape[1]), not self.gated), self.gated)


def sounding_mask(logits: np.ndarray, threshold: float) -> np.ndarray:
    """K_t of M frames as a mask: (M, C) float step logits -> (M, C) bool
    ``sigmoid(s_t,k) >= threshold``, in float64 as
    :func:`pcas_core.method.pseudo_masks.sounding_classes` computes it for the pseudo-masks."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))) >= threshold


def head_audio(inputs: HeadInputs, *, conditioned: bool, n_frames: int, num_foreground: int,
               logits: np.ndarray | None = None, tokens: np.ndarray | None = None) -> HeadAudio:
    """What a head with ``inputs`` hears of ``n_frames`` frames.

    Args:
        inputs: the head's :class:`pcas_core.models.heads.HeadInputs` (audio input, gate, theta_a).
        conditioned: the head is conditioned on audio (``audio_condition`` not ``none``).
        num_foreground: C, the head's foreground classes.
        logits: (M, C) float32 step logits s_t of each frame's second; needed with the gate or
            ``audio_input: scores``.
        tokens: (M, Da) float32 audio tokens a_t; needed by a conditioned head with
            ``audio_input: token``.

    Returns:
        The vector (a_t, sigmoid(s_t) in float32, or (M, 0)) and ``allowed`` (K_t of
        :func:`sounding_mask` at ``inputs.audio_threshold``, or all True).

    Raises:
        ValueError: an input the head needs is missing, or has another row count or class count.
    """
    def need(array: np.ndarray | None, what: str) -> torch.Tensor:
        if array is None or len(array) != n_frames:
            raise ValueError(f"the segmentation head needs {what} of each of the {n_frames} frames"
                             f", got {None if array is None else np.shape(array)}")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    use_scores = conditioned and inputs.audio_input == "scores"
    step = need(logits, "step logits s_t") if inputs.audio_gate or use_scores else None
    if step is not None and step.shape[1] != num_foreground:
        raise ValueError(f"step logits have {step.shape[1]} classes, the head {num_foreground} "
                         "foreground classes")
    vector = (step.sigmoid() if use_scores else need(tokens, "audio tokens a_t")) if conditioned \
        else torch.zeros(n_frames, 0)
    allowed = torch.from_numpy(sounding_mask(logits, inputs.audio_threshold)) \
        if inputs.audio_gate else torch.ones(n_frames, num_foreground, dtype=torch.bool)
    return HeadAudio(vector, allowed, inputs.audio_gate)


class PaddedFrame(NamedTuple):
    """The official AVSS padded frame (:mod:`pcas_core.evaluation.official`, quirk 1) through the ViT.

    Attributes:
        tokens: (1, N, D') float32 head input (as :func:`head_inputs` with the same features).
        cam: (K, h, w) float32 raw CAMs. logits: (K,) float32 frame logits.
        image: (H, W, 3) uint8 what the input looks like: the normalisation mean colour (for a
            CRF and for pictures).
    """

    tokens: torch.Tensor
    cam: np.ndarray
    logits: np.ndarray
    image: np.ndarray


@torch.no_grad()
def padded_frame(model: VisualClassifier, size: int, *, features: str,
                 env: RunEnv) -> PaddedFrame:
    """Run ``model`` on the input the official AVSS loader pads 5-frame videos with: a
    (3, size, size) tensor of zeros after normalisation (``avss/color_dataloader.py``,
    ``torch.zeros_like(img)``).

    Raises:
        ValueError: unknown ``features``.
    """
    check_features(features)
    device = env.device
    model.to(device).eval()
    with autocast(device, env.amp):
        out = model(torch.zeros(1, 3, size, size, device=device))
    colour = np.round(np.asarray(model.mean, dtype=np.float64) * 255.0).astype(np.uint8)
    return PaddedFrame(_head_input(out.patch_tokens, out.final_tokens, features),
                       model.cam(out.patch_tokens.float())[0].cpu().numpy().astype(np.float32),
                       out.logits[0].float().cpu().numpy(),
                       np.broadcast_to(colour, (size, size, 3)).copy())


@torch.no_grad()
def predict_masks(head: SegmentationHead, tokens: torch.Tensor, out_size: tuple[int, int], *,
                  batch_frames: int, device: torch.device, audio: HeadAudio | None = None,
                  images: np.ndarray | None = None, crf: CRF | None = None,
                  log: logging.Logger | None = None,
                  progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class masks, optionally refined by a dense CRF.

    Args:
        tokens: (M, N, D) float32 head input tokens.
        out_size: (H, W) pixels.
        audio: what the head hears of each frame (:func:`head_audio`); None for a plain head.
            With the gate, classes outside K_t get probability 0 (after the CRF too), so no
            mask holds them.
        images: (M, H, W, 3) uint8 frames, needed with ``crf``.
        crf: e.g. :class:`pcas_core.method.crf.DenseCRF`, or a
            :class:`pcas_core.method.crf.CRFPool` to refine each batch's frames in its workers;
            on background and the frame's K_t only with the gate
            (:func:`pcas_core.method.crf.refine_kept`), on every class without.
        log: where progress lines go (:mod:`pcas_core.runtime.progress`), frames done.
        progress: the progress of a longer pass to update by the frames done instead (then
            ``log`` is not used).

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``.

    Raises:
        ValueError: ``crf`` without one image per frame; audio for another number of frames or
            that the head cannot read.
    """
    if crf is not None and (images is None or len(images) != len(tokens)):
        raise ValueError("CRF post-processing needs one image per frame")
    if audio is None:
        audio = head_audio(HeadInputs(), conditioned=False, n_frames=len(tokens),
                           num_foreground=head.num_classes - 1)
    if len(audio.vector) != len(tokens):
        raise ValueError(f"audio of {len(audio.vector)} frames for {len(tokens)} frames of tokens")
    head.to(device).eval()
    masks, foreground = [], []
    desc = "head masks" + (" + CRF" if crf is not None else "")
    with (Progress(len(tokens), desc, unit="frame", log=log) if progress is None
          else contextlib.nullcontext(progress)) as done:
        for start in range(0, len(tokens), batch_frames):
            part = audio.rows(slice(start, start + batch_frames))
            logits = head(tokens[start:start + batch_frames].to(device), out_size,
                          part.vector.to(device))
            probs = audio_gate(logits, part.allowed.to(device)).softmax(dim=1).cpu()
            if crf is not None:  # on background + K_t (every class for an ungated head)
                kept = [np.flatnonzero(np.r_[True, row]) for row in part.allowed.numpy()]
                refined = refine_kept(crf, images[start:start + len(probs)],
                                      probs.float().numpy(), kept)
                masks.append(np.stack([k[r.argmax(0)] for k, r in zip(kept, refined)])
                             .astype(np.uint8))
                foreground.append(np.stack([1.0 - r[0] for r in refined]).astype(np.float32))
            else:
                masks.append(probs.argmax(dim=1).numpy().astype(np.uint8))
                foreground.append((1.0 - probs[:, 0]).numpy().astype(np.float32))
            done.update(len(probs))
    return np.concatenate(masks), np.concatenate(foreground)


def segment(aligned: VisualClassifier, head: SegmentationHead, clips: Dataset, *, features: str,
            out_size: tuple[int, int], batch_videos: int, batch_frames: int, env: RunEnv,
            audio: HeadAudio | None = None, images: np.ndarray | None = None,
            crf: CRF | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of every frame of ``clips``: the aligned model's tokens through the head (docs/method.md §5).

    Args:
        clips: videos as items (``VideoClips`` or ``ArrayClips``, normalised with the aligned
            model's mean/std).
        features, batch_videos: as in :func:`head_inputs`.
        out_size, batch_frames, audio, images, crf: as in :func:`predict_masks` (``audio`` of
            every frame of ``clips``, in order).

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``
        in frame order.
    """
    tokens = head_inputs(aligned, clips, features=features, batch_videos=batch_videos, env=env)
    return predict_masks(head, tokens, out_size, batch_frames=batch_frames, device=env.device,
                         audio=audio, images=images, crf=crf, log=env.log)


class TestChunk(NamedTuple):
    """Consecutive frames of a test split with the method's prediction (:func:`predict_test_split`).

    Attributes:
        rows: their rows of the split's frame table (a slice).
        masks: (m, H, W) uint8 class indices. foreground: (m, H, W) float32 1 - p(background).
        images: (m, S, S, 3) uint8 frames, or None when not asked for.
    """

    rows: slice
    masks: np.ndarray
    foreground: np.ndarray
    images: np.ndarray | None


def padded_prediction(aligned: VisualClassifier, head: SegmentationHead, size: int, *,
                      features: str, env: RunEnv, audio: HeadAudio | None = None,
                      crf: CRF | None = None) -> tuple[PaddedFrame, np.ndarray, np.ndarray]:
    """The official AVSS padded frame (:func:`padded_frame`) through the aligned model and the
    head, heard as :meth:`HeadAudio.silent` (a head that hears: ``audio`` of any frames, for the
    widths; None for a plain head), refined by ``crf`` like every frame.

    Returns:
        ``(the padded frame, its (S, S) uint8 mask, its (S, S) float32 foreground)``.
    """
    pad = padded_frame(aligned, size, features=features, env=env)
    mask, foreground = predict_masks(head, pad.tokens, (size, size), batch_frames=1,
                                     device=env.device,
                                     audio=None if audio is None else audio.silent(1),
                                     images=pad.image[None], crf=crf)
    return pad, mask[0], foreground[0]


def predict_test_split(aligned: VisualClassifier, head: SegmentationHead, test: AVSData, *,
                       features: str, batch_videos: int, batch_frames: int, env: RunEnv,
                       audio: Any = None, crf: CRF | None = None,
                       images: bool = False) -> Iterator[TestChunk]:
    """The method's prediction on a test split, chunk by chunk of frames in frame-table order
    (the aligned model's tokens through the head, :func:`head_input_batches` and
    :func:`predict_masks`), so memory holds one chunk whatever the split's size. ``evaluate`` and
    ``pcas predict --root`` both score it (with :func:`padded_prediction` for the official
    padded frame).

    The head runs on the same windows of ``batch_frames`` frames as :func:`segment` (a chunk is
    whole windows, the last one aside), so the masks are those of :func:`segment` on the split.

    Args:
        test: the test split (frames at the models' ``img_size``), decoded by
            ``env.num_workers`` DataLoader processes.
        audio: what the head hears: anything whose ``rows(slice)`` gives the
            :class:`HeadAudio` of those frame-table rows (a :class:`HeadAudio` of every frame,
            or a reader of the ``audio`` store); None for a plain head.
        crf: as in :func:`segment`.
        images: also decode each chunk's frames (:class:`TestChunk` ``images``).

    Yields:
        :class:`TestChunk` covering every frame of ``test`` once, in order (progress lines of
        the frames predicted, "test split: head masks", go to ``env.log``; the time the caller
        spends on a chunk counts too).
    """
    size = (test.img_size, test.img_size)
    frames = test.frame_images()
    clips = test.clips(aligned.mean, aligned.std, num_workers=env.num_workers)
    pending: list[torch.Tensor] = []
    start = 0  # first frame-table row of ``pending``

    def window(n: int) -> TestChunk:
        nonlocal pending, start
        tokens = torch.cat(pending)
        pending = [tokens[n:]]
        rows = slice(start, start + n)
        start += n
        pics = frames[rows].array() if images or crf is not None else None
        masks, foreground = predict_masks(head, tokens[:n], size, batch_frames=batch_frames,
                                          device=env.device,
                                          audio=None if audio is None else audio.rows(rows),
                                          images=pics, crf=crf, progress=progress)
        return TestChunk(rows, masks, foreground, pics if images else None)

    desc = "test split: head masks" + (" + CRF" if crf is not None else "")
    with Progress(len(test.frames), desc, unit="frame", log=env.log) as progress:
        for tokens in head_input_batches(aligned, clips, features=features,
                                         batch_videos=batch_videos, env=env, progress=False):
            pending.append(tokens)
            whole = sum(len(t) for t in pending) // batch_frames * batch_frames
            if whole:
                yield window(whole)
        rest = sum(len(t) for t in pending)
        if rest:
            yield window(rest)
