"""Every training loop of pcas on small synthetic data, for tests/test_distributed.py.

``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_check.py OUT.npz``
trains in two Gloo processes; :func:`run` called in one process does the same in one. Each
loop (visual classifier, TVP audio encoder, alignment with CMC + CMPC + CMCC, segmentation head)
trains 2 epochs on 11 videos (or 13 frames) in global batches of 4, so the last batch splits
unevenly (2 + 1), then encodes every item; rank 0 saves per-epoch losses and encodings. The
alignment's CMPC and CMCC start at its last step of epoch 0 (``token_contrast_start``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

import pcas_core  # noqa: F401  (import shim before timm)
from pcas_core.runtime import distributed
from pcas_core.data.head_rows import head_rows_in_memory
from pcas_core.models.heads import HeadInputs, SegmentationHead
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig, EvaluateConfig, TrainAudioConfig, TrainVisualConfig
from pcas_core.pipeline.align import AlignInputs, build_align_model, maps_pass, train_alignment
from pcas_core.pipeline.evaluate import train_head
from pcas_core.pipeline.inference import head_audio, head_inputs
from pcas_core.pipeline.train_audio import AudioInputs, audio_pass, train_audio_encoder
from pcas_core.pipeline.train_visual import train_classifier, visual_pass
from pcas_core.runtime.stage import RunEnv

CPU = torch.device("cpu")
LOG = logging.getLogger("pcas.ddp_check")
VIDEOS, CLASSES, BATCH = 11, 4, 4


class Clips(Dataset):
    """Synthetic videos of 1-3 frames (32 x 32) with multi-hot labels, as VideoClips items."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        counts = torch.randint(1, 4, (VIDEOS,), generator=g).tolist()
        self.frames = [torch.randn(c, 3, 32, 32, generator=g) for c in counts]
        self.labels = (torch.rand(VIDEOS, CLASSES, generator=g) > 0.6).float()
        self.table = pd.DataFrame({"video": np.repeat(np.arange(VIDEOS), counts)})

    def __len__(self) -> int:
        return VIDEOS

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "labels": self.labels[i], "video": i}


def _visual() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": CLASSES,
                         "img_size": 32, "backbone_kwargs": {"patch_size": 8, "depth": 1,
                                                             "embed_dim": 16, "num_heads": 2}})


def _stack(parts: list[dict], key: str) -> np.ndarray:
    return np.concatenate([p[key] for p in parts])


def run() -> dict[str, np.ndarray]:
    """Train and encode with every loop; returns losses and encodings by name."""
    out: dict[str, np.ndarray] = {}
    clips = Clips()
    env = RunEnv(seed=0, device=CPU, log=LOG)

    model = _visual()
    hist = train_classifier(model, clips, TrainVisualConfig(epochs=2, min_steps=0, batch_videos=BATCH,
                                                            lr=1e-3, warmup_epochs=0.0,
                                                            weight_decay=0.0), env)
    out["visual_loss"] = np.array([h["loss"] for h in hist])
    out["visual_logits"] = _stack(list(visual_pass(model, clips, batch_videos=BATCH, env=env,
                                                   ranks=True)), "logits")

    torch.manual_seed(0)
    audio = TVPAudioEncoder(num_classes=CLASSES, n_mels=32, target_length=300, patch_size=16,
                            fstride=16, tstride=16, embed_dim=32, depth=1, num_heads=2,
                            prompt_dim=8, max_steps=3, frames_per_step=100)
    g = torch.Generator().manual_seed(2)
    fbank, prompts = torch.randn(VIDEOS, 300, 32, generator=g), torch.randn(VIDEOS, 3, 8, generator=g)
    n_steps = torch.randint(1, 4, (VIDEOS,), generator=g)
    inputs = AudioInputs(fbank, prompts, 8, n_steps, clips.labels)
    hist = train_audio_encoder(audio, inputs, TrainAudioConfig(epochs=2, min_steps=0,
                                                               batch_videos=BATCH, lr=1e-3,
                                                               warmup_epochs=0.0,
                                                               weight_decay=0.0), env)
    out["audio_loss"] = np.array([h["loss"] for h in hist])
    steps = pd.DataFrame({"video": np.repeat(np.arange(VIDEOS), n_steps.numpy())})
    out["audio_tokens"] = _stack(list(audio_pass(audio, inputs, steps, batch_videos=BATCH,
                                                 env=env, ranks=True)), "audio_token")

    cfg = dataclasses.replace(AlignConfig(), embed_dim=8, n_crops=3, crop_size=16, epochs=2,
                              min_steps=0, batch_videos=BATCH, lr_backbone=1e-3, lr_heads=1e-3,
                              warmup_epochs=0.0, token_contrast_start=0.3)  # from step 2 of 6
    tokens = torch.randn(len(clips.table), 6, generator=g).numpy()
    align = build_align_model(_visual(), 6, cfg)
    hist = train_alignment(align, AlignInputs(clips, clips.table, tokens), cfg, env)
    for term in ("loss", "cls", "cmc", "cmpc", "cmcc", "crop_positive", "patch_ignored",
                 "final_token_norm"):
        out[f"align_{term}"] = np.array([h[term] for h in hist])
    maps = list(maps_pass(align, clips, clips.table, tokens, batch_videos=BATCH, env=env,
                          ranks=True))
    out["align_sounding"] = _stack(maps, "sounding")

    head_tokens = head_inputs(align.visual, clips, features="patch", batch_videos=BATCH,
                              env=env, ranks=True)
    masks = torch.randint(0, 3, (len(head_tokens), 16, 16), generator=g).to(torch.uint8)
    masks[:, :4] = 255  # ignored pixels: the loss is a mean over a variable number of pixels
    torch.manual_seed(0)
    head = SegmentationHead(in_dim=head_tokens.shape[-1], num_classes=3, grid=(4, 4),
                            hidden_dim=0)
    plain = head_audio(HeadInputs(), conditioned=False, n_frames=len(head_tokens),
                       num_foreground=2)
    hist = train_head(head, head_rows_in_memory(head_tokens, masks.numpy(), 16, plain.vector,
                                                plain.allowed),
                      EvaluateConfig(epochs=2, min_steps=0, batch_frames=BATCH, lr=1e-2,
                                     weight_decay=0.0, train_size=16, background_weight=0.5), env)
    out["head_loss"] = np.array([h["loss"] for h in hist])
    out["head_tokens"] = head_tokens.numpy()
    return out


def main(path: str) -> None:
    """Join the torchrun group (Gloo), :func:`run`, and save on rank 0; also records the error
    of a global batch too small for the processes (``too_small``)."""
    distributed.init(CPU)
    out = run()
    try:
        distributed.rank_batches(3, 2, shuffle=True)  # last global batch: 1 item
        out["too_small"] = np.array("")
    except ValueError as err:
        out["too_small"] = np.array(str(err))
    out["world"] = np.array(distributed.world_size())
    if distributed.is_main():
        np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
