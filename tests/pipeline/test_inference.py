"""What the segmentation head hears (pcas_core.pipeline.inference.head_audio) and the gate on the
test-time path and in training: K_t as the pseudo-masks compute it, no class outside K_t in any
mask (after a CRF too), background on frames without audio, pseudo-labels outside K_t ignored."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.data.head_rows import head_rows_in_memory
from pcas_core.method.losses import segmentation_ce
from pcas_core.method.pseudo_masks import sounding_classes
from pcas_core.models.heads import HeadInputs, SegmentationHead, audio_gate
from pcas_core.params import EvaluateConfig
from pcas_core.pipeline.evaluate import train_head
from pcas_core.pipeline.inference import head_audio, predict_masks, sounding_mask
from pcas_core.runtime.stage import RunEnv

CPU = torch.device("cpu")
M, C, GRID = 6, 4, (2, 2)


def _logits(seed=0):
    return np.random.default_rng(seed).normal(0.0, 2.0, (M, C)).astype(np.float32)


def test_k_t_is_the_pseudo_masks_rule():
    logits = _logits()
    logits[0, 0] = np.log(0.3 / 0.7)  # exactly at theta_a
    mask = sounding_mask(logits, 0.3)
    for row, frame in zip(mask, logits):
        assert np.flatnonzero(row).tolist() == sounding_classes(frame, 0.3).tolist()


def test_what_the_head_hears():
    logits, tokens = _logits(), np.arange(M * 3, dtype=np.float32).reshape(M, 3)
    plain = head_audio(HeadInputs(), conditioned=False, n_frames=M, num_foreground=C)
    assert plain.vector.shape == (M, 0) and plain.allowed.all() and not plain.gated
    gated = head_audio(HeadInputs(audio_gate=True, audio_threshold=0.5), conditioned=False,
                       n_frames=M, num_foreground=C, logits=logits)
    assert torch.equal(gated.allowed, torch.from_numpy(logits >= 0.0))  # sigmoid >= 0.5
    scores = head_audio(HeadInputs(audio_input="scores"), conditioned=True, n_frames=M,
                        num_foreground=C, logits=logits)
    assert torch.allclose(scores.vector, torch.sigmoid(torch.from_numpy(logits)))
    assert scores.allowed.all()
    token = head_audio(HeadInputs(audio_input="token"), conditioned=True, n_frames=M,
                       num_foreground=C, tokens=tokens)
    assert torch.equal(token.vector, torch.from_numpy(tokens))
    silent = gated.silent(2)
    assert silent.vector.shape == (2, 0) and not silent.allowed.any()
    assert token.silent(1).allowed.all() and (token.silent(1).vector == 0).all()
    with pytest.raises(ValueError, match="audio tokens a_t of each of the 6 frames"):
        head_audio(HeadInputs(), conditioned=True, n_frames=M, num_foreground=C, logits=logits)
    with pytest.raises(ValueError, match="step logits have 4 classes, the head 5"):
        head_audio(HeadInputs(audio_gate=True), conditioned=False, n_frames=M, num_foreground=5,
                   logits=logits)


def _head(seed=0, **kw):
    torch.manual_seed(seed)
    head = SegmentationHead(in_dim=3, num_classes=C + 1, grid=GRID, **kw)
    torch.nn.init.normal_(head.classifier.weight, std=3.0)
    return head.eval()


def _favour_last_class(image, probs):
    """A stand-in CRF that moves most mass to the last class wherever it runs."""
    out = probs * 0.1
    out[-1] += 0.9
    return out


@pytest.mark.parametrize("crf", [None, _favour_last_class])
def test_gated_masks_hold_background_or_k_t_only(crf):
    tokens = torch.randn(M, 4, 3, generator=torch.Generator().manual_seed(1))
    logits = _logits(2)
    audio = head_audio(HeadInputs(audio_gate=True, audio_threshold=0.5), conditioned=False,
                       n_frames=M, num_foreground=C, logits=logits)
    images = np.zeros((M, 8, 8, 3), np.uint8)
    head = _head()
    masks, fg = predict_masks(head, tokens, (8, 8), batch_frames=4, device=CPU, audio=audio,
                              images=images, crf=crf)
    free, _ = predict_masks(head, tokens, (8, 8), batch_frames=4, device=CPU, images=images,
                            crf=crf)
    allowed = logits >= 0.0
    for t in range(M):
        assert set(np.unique(masks[t]).tolist()) - {0} <= set((np.flatnonzero(allowed[t]) + 1)
                                                              .tolist())
        if not allowed[t].any():
            assert (masks[t] == 0).all() and np.allclose(fg[t], 0.0)
    assert not np.array_equal(masks, free)
    if crf is None:  # the argmax over background and K_t of the ungated logits
        with torch.no_grad():
            raw = head(tokens, (8, 8))
        want = audio_gate(raw, torch.from_numpy(allowed)).argmax(1).numpy()
        np.testing.assert_array_equal(masks, want)
    # a frame without audio (the official padded frame) is background for the gated head
    pad, _ = predict_masks(head, tokens[:1], (8, 8), batch_frames=1, device=CPU,
                           audio=audio.silent(1), images=images[:1], crf=crf)
    assert (pad == 0).all()


def test_training_with_the_gate_ignores_pseudo_labels_outside_k_t():
    """One epoch at lr 0 records the initial loss: a pseudo-mask holding a class outside K_t
    gives the loss of the same mask with those pixels ignored, finite, equal to the gated CE."""
    tokens = torch.randn(M, 4, 3, generator=torch.Generator().manual_seed(3))
    logits = _logits(4)
    logits[:, 0] = -5.0  # class 1 never heard
    logits[:, 1] = 5.0   # class 2 always heard
    audio = head_audio(HeadInputs(audio_gate=True, audio_threshold=0.5), conditioned=False,
                       n_frames=M, num_foreground=C, logits=logits)
    masks = np.zeros((M, 8, 8), np.uint8)
    masks[:, :4] = 2
    masks[:, 4:6] = 1  # outside K_t
    masks[:, 7] = IGNORE_INDEX
    cleaned = masks.copy()
    cleaned[cleaned == 1] = IGNORE_INDEX
    cfg = EvaluateConfig(epochs=1, batch_frames=M, lr=0.0, weight_decay=0.0, train_size=8)
    env = RunEnv(device=CPU)
    losses = [train_head(_head(hidden_dim=0), head_rows_in_memory(
        tokens, m, cfg.train_size, audio.vector, audio.allowed), cfg, env)[0]["loss"]
              for m in (masks, cleaned)]
    assert np.isfinite(losses[0]) and losses[0] == pytest.approx(losses[1], rel=1e-6)
    with torch.no_grad():
        want = segmentation_ce(audio_gate(_head(hidden_dim=0).train()(tokens, (8, 8)),
                                          audio.allowed), torch.from_numpy(cleaned).long(),
                               background_weight=cfg.background_weight,
                               ignore_index=IGNORE_INDEX)
    assert losses[0] == pytest.approx(float(want), rel=1e-5)
    plain = head_audio(HeadInputs(), conditioned=False, n_frames=M, num_foreground=C)
    ungated = train_head(_head(hidden_dim=0), head_rows_in_memory(
        tokens, cleaned, cfg.train_size, plain.vector, plain.allowed), cfg, env)[0]["loss"]
    assert ungated > losses[1]  # the gate removes the mass the plain head puts on unheard classes
    loss_all = train_head(_head(hidden_dim=0), head_rows_in_memory(
        tokens, cleaned, cfg.train_size, audio.vector, audio.allowed),
        replace(cfg, gate_in_loss=False), env)[0]["loss"]
    assert loss_all == pytest.approx(ungated, rel=1e-6)  # every logit trained, the gate at test only


@pytest.mark.parametrize("crf", [None, _favour_last_class])
def test_the_test_split_chunk_by_chunk_is_segment_on_the_whole_split(tmp_path, crf):
    """predict_test_split streams the split (chunks of whole head windows, across video batches)
    and gives the masks that segment() gives on all of it at once, with the heard audio of each
    chunk's rows and, with a CRF, each chunk's images; every frame once, in order."""
    from layouts import make_avss
    from pcas_core.data.dataset import open_dataset
    from pcas_core.models.visual import build_visual
    from pcas_core.pipeline.inference import padded_prediction, predict_test_split, segment

    data = open_dataset({"root": str(make_avss(tmp_path / "avss")), "img_size": 16})
    torch.manual_seed(0)
    visual = build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": 70, "img_size": 16,
                           "pretrained": False, "token_layer": 0,
                           "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 16,
                                               "num_heads": 2}})
    head = SegmentationHead(in_dim=16, grid=(2, 2)).eval()
    torch.nn.init.normal_(head.classifier.weight, std=3.0)
    logits = np.random.default_rng(0).normal(0, 2, (len(data.frames), 70)).astype(np.float32)
    audio = head_audio(HeadInputs(audio_gate=True, audio_threshold=0.5), conditioned=False,
                       n_frames=len(data.frames), num_foreground=70, logits=logits)
    env = RunEnv(device=CPU)
    clips = data.clips(visual.mean, visual.std)
    want, want_fg = segment(visual, head, clips, features="patch", out_size=(16, 16),
                            batch_videos=2, batch_frames=4, env=env, audio=audio,
                            images=data.images() if crf else None, crf=crf)
    chunks = list(predict_test_split(visual, head, data, features="patch", batch_videos=2,
                                     batch_frames=4, env=env, audio=audio, crf=crf, images=True))
    assert [c.rows.start for c in chunks] == [0, 8, 20, 28] and chunks[-1].rows.stop == 30
    np.testing.assert_array_equal(np.concatenate([c.masks for c in chunks]), want)
    np.testing.assert_array_equal(np.concatenate([c.foreground for c in chunks]), want_fg)
    np.testing.assert_array_equal(chunks[1].images, data.images(np.arange(8, 20)))
    _, pad, _ = padded_prediction(visual, head, 16, features="patch", env=env, audio=audio,
                                  crf=crf)
    assert (pad == 0).all()  # the padded frame has no audio: the gated head paints background
