"""CAM quality of a visual checkpoint on the demo (or any dataset with masks): for every frame of a
split and every class in its mask, the true class's CAM (ReLU, min-max, bilinear to the frame) is
thresholded and compared with that class's mask (IoU). Prints the mean IoU per threshold and the
IoU of marking every pixel (the object's area share), the no-localisation reference.

    python benchmarks/cam_quality.py models/visual.safetensors [--split train] [--every 2]
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer
import yaml

import pcas_core  # noqa: F401
from pcas_core.method.cam import minmax_normalize
from pcas_core.data.dataset import open_dataset
from pcas_core.data.loader import video_loader
from pcas_core.models.visual import load_visual

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)


def main(checkpoint: Path, params: Annotated[Path, typer.Option()] = Path("params.yaml"),
         split: str = "train", every: Annotated[int, typer.Option(help="keep every k-th video")] = 1) -> None:
    torch.set_grad_enabled(False)
    data = open_dataset(yaml.safe_load(params.read_text())["data"]).split(split)
    model, config = load_visual(checkpoint)
    model.eval()
    keep = np.arange(len(data.metadata)) % every == 0
    has = data.has_mask()
    masks = data.masks()
    mask_row = np.cumsum(has) - 1
    ious = {t: [] for t in THRESHOLDS}
    area = []
    row = 0
    for batch in video_loader(data.clips(model.mean, model.std), batch_videos=8, shuffle=False):
        n = len(batch["frames"])
        rows = np.arange(row, row + n)
        row += n
        sel = [i for i, r in enumerate(rows) if has[r] and keep[data.frames.video[r]]]
        if not sel:
            continue
        out = model(batch["frames"][sel])
        cams = F.interpolate(model.cam(out.patch_tokens.float()), size=(data.img_size,) * 2,
                             mode="bilinear", align_corners=False)
        for j, i in enumerate(sel):
            gt = masks[mask_row[rows[i]]]
            for c in np.unique(gt):
                if c in (0, 255):
                    continue
                cam = minmax_normalize(cams[j, int(c) - 1].relu(), dims=(0, 1)).numpy()
                truth = gt == c
                area.append(truth.mean())
                for t in THRESHOLDS:
                    pred = cam >= t
                    ious[t].append((pred & truth).sum() / max((pred | truth).sum(), 1))
    print(f"{checkpoint} ({config['backbone']}, token_layer {config.get('token_layer')}, "
          f"grid {model.grid}), {split} split, {len(area)} (frame, class) pairs")
    print("  ".join(f"IoU@{t} {np.mean(v):.3f}" for t, v in ious.items()),
          f" best {max(np.mean(v) for v in ious.values()):.3f}  every pixel {np.mean(area):.3f}")


if __name__ == "__main__":
    typer.run(main)
