"""Tiny datasets in the exact released layouts of AVSBench-semantic (AVSS), S4 and MS3, written by
the tests into temporary folders (16x16 frames, 5 one-second frames, 1 kHz... short wavs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from pcas_core.data.palette import index_to_rgb, voc_palette

ASSETS = Path(__file__).resolve().parents[1] / "data" / "demo-assets"
PAL = voc_palette()
SIZE = 16
RATE = 16000
AVSS_HEADER = "vid,uid,s_min,s_sec,a_obj,split,label\n"


def tone(seconds: float, freq: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 5.0, rate: int = RATE, wave: np.ndarray | None = None,
              subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate=rate) if wave is None else wave, rate, subtype=subtype)
    return path


def write_frame(path: Path, seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def box(cls: int, size: int = SIZE) -> np.ndarray:
    """(size, size) uint8 index mask: a centred square of class ``cls`` on background."""
    m = np.zeros((size, size), np.uint8)
    m[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = cls
    return m


def write_rgb_mask(path: Path, index: np.ndarray, mode: str = "RGB") -> Path:
    """AVSS colour mask; ``mode="P"`` writes a palette PNG whose palette is the VOC one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(index, mode="P")
        img.putpalette(PAL.flatten().tolist())
    else:
        img = Image.fromarray(index_to_rgb(index, PAL))
    img.save(path)
    return path


def write_binary_mask(path: Path, fg: np.ndarray, mode: str = "L") -> Path:
    """S4 style (``L``, 0/255) or MS3 style (``P``, index 0/1 with black/white palette)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(fg.astype(np.uint8), mode="P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    else:
        img = Image.fromarray((fg > 0).astype(np.uint8) * 255, mode="L")
    img.save(path)
    return path


# ------------------------------------------------------------------ AVSS
AVSS_VIDEOS = [  # uid, subset, split, a_obj, class name of the mask box
    ("trA", "v1s", "train", "dog", "dog"),
    ("trB", "v1m", "train", "guitar_man", "guitar"),
    ("vaA", "v1s", "val", "dog", "dog"),
    ("teA", "v1s", "test", "man", "man"),
    ("teB", "v2", "test", "guitar", "guitar"),
]


def make_avss(root: Path) -> Path:
    """AVSS layout: 5 videos (train 2, val 1, test 2), v1s train annotated on frame 0 only."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASSETS / "label2idx.json", root / "label2idx.json")
    l2i = json.loads((root / "label2idx.json").read_text())
    rows = []
    for i, (uid, subset, split, a_obj, name) in enumerate(AVSS_VIDEOS):
        vdir = root / subset / uid
        n = 10 if subset == "v2" else 5
        for t in range(n):
            write_frame(vdir / "frames" / f"{t}.jpg", seed=10 * i + t, size=(24, SIZE))
            if t == 0 or not (subset == "v1s" and split == "train"):
                write_rgb_mask(vdir / "labels_rgb" / f"{t}.png", box(l2i[name] - 1))
        write_wav(vdir / "audio.wav", seconds=n)
        rows.append(f'{uid},{uid},0,0,"{a_obj}",{split},{subset}\n')
    (root / "metadata.csv").write_text(AVSS_HEADER + "".join(rows))
    return root


# ------------------------------------------------------------------ S4
S4_VIDEOS = [  # name, category, split
    ("s4a", "dog_barking", "train"), ("s4b", "baby_laughter", "train"),
    ("s4c", "dog_barking", "train"), ("s4d", "baby_laughter", "val"),
    ("s4e", "dog_barking", "test"), ("s4f", "baby_laughter", "test"),
]


def make_s4(root: Path, audio: str = "wav") -> Path:
    """S4 layout (the release's Single-source folder); train annotated on frame 1 only.

    ``audio``: ``wav`` (``s4_data/audio_wav/{split}/{category}/{vid}.wav``, the default
    ``data.audio_dir``) or ``mp4`` (a flat folder ``videos/{vid}.mp4`` with an AAC track).
    """
    data = root / "s4_data"
    lines = ["name,start,category,split\n"]
    for i, (vid, cat, split) in enumerate(S4_VIDEOS):
        rel = Path(split) / cat / vid
        for k in range(1, 6):
            write_frame(data / "visual_frames" / rel / f"{vid}_{k}.png", seed=100 + 10 * i + k)
            if k == 1 or split != "train":
                write_binary_mask(data / "gt_masks" / rel / f"{vid}_{k}.png", box(1) if k < 5
                                  else np.zeros((SIZE, SIZE), np.uint8))
        if audio == "wav":
            write_wav(data / "audio_wav" / split / cat / f"{vid}.wav", seconds=5.0)
        else:
            write_mp4(root / "videos" / f"{vid}.mp4", seconds=5.0)
        lines.append(f"{vid},0,{cat},{split}\n")
    (root / "s4_meta_data.csv").write_text("".join(lines))
    return root


# ------------------------------------------------------------------ MS3
MS3_VIDEOS = [  # name, split, labels
    ("m3a", "train", "guitar_man"), ("m3b", "train", "dog"), ("m3c", "val", "man"),
    ("m3d", "test", "dog_guitar"), ("m3e", "test", "man"),
]


def make_ms3(root: Path) -> Path:
    """MS3 layout (the release's Multi-sources folder) plus the labels csv and label2idx.json
    it needs; palette-mode masks on every frame of every split."""
    data = root / "ms3_data"
    lines = ["video_id,split\n"]
    labels = ["name,labels\n"]
    for i, (vid, split, names) in enumerate(MS3_VIDEOS):
        for k in range(1, 6):
            write_frame(data / "visual_frames" / vid / f"{vid}.mp4_{k}.png", seed=200 + 10 * i + k)
            write_binary_mask(data / "gt_masks" / split / vid / f"{vid}_{k}.png", box(1), mode="P")
        write_wav(data / "audio_wav" / f"{vid}.wav", seconds=5.0)
        lines.append(f"{vid},{split}\n")
        labels.append(f"{vid},{names}\n")
    (root / "ms3_meta_data.csv").write_text("".join(lines))
    (root / "video_labels.csv").write_text("".join(labels))
    shutil.copyfile(ASSETS / "label2idx.json", root / "label2idx.json")
    return root


def write_mp4(path: Path, seconds: float, rate: int = RATE) -> Path:
    """A tiny video file with a mono AAC audio track of a 440 Hz tone (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    wave = tone(seconds, rate=rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, len(wave), 1024):
            chunk = wave[start:start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# ------------------------------------------------------------------ tiny DAG params
#: params for a tiny demo run of the whole DAG (minutes on a CPU), merged into params.yaml
#: (demo: 11 training clips, so a global batch of 8 and a last one of 3: 6 always, 3 event,
#: 1 multi, 1 long; 8 test clips: 3 event, 3 silent, 1 multi, 1 long: every kind, clips of 5 and
#: of 10 frames; min_steps 0: each loop runs exactly its epochs)
TINY = {
    "data": {"img_size": 32},
    "demo": {"classes": ["dog", "guitar", "hen"], "img_size": 64,
             "clips": {"always": {"train": 2, "val": 0, "test": 0},
                       "event": {"train": 1, "val": 0, "test": 1},
                       "silent": {"train": 0, "val": 0, "test": 1},
                       "multi": {"train": 1, "val": 0, "test": 1},
                       "long": {"train": 1, "val": 0, "test": 1}}},
    "train_visual": {"epochs": 1, "min_steps": 0},  # the default backbone (pretrained EfficientNet-Lite0) at 32 px
    "train_audio": {"model": {"embed_dim": 32, "depth": 1, "num_heads": 2}, "epochs": 1,
                    "min_steps": 0},
    "align": {"epochs": 1, "min_steps": 0, "embed_dim": 16, "crop_size": 16, "n_crops": 2},  # CMC, CMPC, CMCC on
    "pseudo_masks": {"workers": 1},
    "evaluate": {"epochs": 1, "min_steps": 0, "hidden_dim": 0, "n_overlays": 2},
}
