"""params-paper.yaml, the paper's setting in one file: it parses as params.yaml does, has every
key params.yaml has, holds the paper's value at each of the paper's keys and the demo's value
everywhere else (so a key added to params.yaml, or a demo default changed, must be carried over)."""

from pathlib import Path

import pandas as pd
import yaml

from pcas_core.params import load_config

ROOT = Path(__file__).resolve().parents[2]

#: the keys where the paper's setting differs from the demo's, with the paper's values
PAPER = {
    "data.root": "data/avss",
    "fbank.front_end": "ast",
    "train_visual.backbone": "vit_base_patch16_224", "train_visual.pretrained": True,
    "train_visual.backbone_kwargs.output_stride": None, "train_visual.frozen_stages": 0,
    "train_visual.probe_steps": 0, "train_visual.backbone_lr_scale": 1.0,
    "train_audio.encoder": "ast", "train_audio.prompt_norm": "none",
    "train_audio.prompt_mask": "none", "train_audio.model.fstride": 10,
    "train_audio.model.tstride": 10, "train_audio.model.embed_dim": 768,
    "train_audio.model.depth": 12, "train_audio.model.num_heads": 12,
    "align.crop_size": 96, "align.epochs": 9, "align.warmup_epochs": 2,
    "align.lr_backbone": 0.0006, "align.lr_heads": 0.0012,
    "evaluate.audio_gate": False,
}


def _flat(path: Path) -> dict:
    return pd.json_normalize(yaml.safe_load(path.read_text()), sep=".").to_dict("records")[0]


def test_the_paper_preset_differs_from_params_yaml_only_in_the_paper_keys():
    demo, paper = _flat(ROOT / "params.yaml"), _flat(ROOT / "params-paper.yaml")
    assert set(paper) == set(demo), "params-paper.yaml and params.yaml must have the same keys"
    differ = {k for k in demo if paper[k] != demo[k]}
    assert differ == set(PAPER), f"keys that differ beyond the paper's: {sorted(differ - set(PAPER))}"
    assert {k: paper[k] for k in PAPER} == PAPER


def test_the_paper_preset_is_a_valid_params_file():
    config = load_config(ROOT / "params-paper.yaml")
    assert config.train_visual.backbone == "vit_base_patch16_224"
    assert config.train_audio.model.embed_dim == 768 and config.align.epochs == 9
