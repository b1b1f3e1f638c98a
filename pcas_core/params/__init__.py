"""``params.yaml`` as typed configs: one frozen dataclass per section, defaults = the documented values.

Every stage starts with :func:`load_config`, which parses the WHOLE file strictly
(:mod:`pcas_core.params.parsing`): an unknown section or key, or a value of the wrong type, stops the
stage at once with the dotted key in the message, before any data is read; then the couplings
between sections are checked (:func:`check_couplings`). The defaults below are the values shipped
in ``params.yaml`` (``tests/params/test_params.py`` holds the two together). The section classes live
in ``inputs.py``, ``training.py`` and ``masks.py`` of this package, so a key left out of the file
means its documented value. Each field's meaning is the comment beside it in ``params.yaml`` and the
``Attributes`` of its class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pcas_core.params.inputs import (BaseConfig, DataConfig, DemoClips, DemoConfig, FbankConfig,
                                     SplitCounts)
from pcas_core.params.masks import (BaselinesConfig, CRFConfig, EvaluateConfig, PredictConfig,
                                    PredictModels, PseudoMasksConfig, ScoringConfig)
from pcas_core.params.training import (AisfxEncoderConfig, AlignConfig, TrainAudioConfig,
                                       TrainVisualConfig, TVPModelConfig)
from pcas_core.params.parsing import ConfigError, flat_keys, parse, to_dict

__all__ = ["BaseConfig", "DataConfig", "DemoConfig", "DemoClips", "SplitCounts", "FbankConfig",
           "TrainVisualConfig", "TVPModelConfig", "AisfxEncoderConfig", "TrainAudioConfig",
           "AlignConfig", "CRFConfig",
           "PseudoMasksConfig", "BaselinesConfig", "EvaluateConfig", "ScoringConfig", "PredictConfig", "PredictModels",
           "PcasParams", "SECTIONS",
           "load_config", "read_params_file", "parse_params", "check_couplings", "ConfigError",
           "config_sections", "merge_params"]



@dataclass(frozen=True)
class PcasParams:
    """The whole ``params.yaml``, one typed config per section."""

    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    demo: DemoConfig = DemoConfig()
    fbank: FbankConfig = FbankConfig()
    train_visual: TrainVisualConfig = TrainVisualConfig()
    train_audio: TrainAudioConfig = TrainAudioConfig()
    align: AlignConfig = AlignConfig()
    pseudo_masks: PseudoMasksConfig = PseudoMasksConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    scoring: ScoringConfig = ScoringConfig()
    predict: PredictConfig = PredictConfig()


#: where ``dvc.yaml``'s ``demo_data`` stage writes the demo (the default ``data.root``)
DEMO_ROOT = DataConfig().root

#: section name -> its config class
SECTIONS: dict[str, type] = {name: cls for name, cls in PcasParams.__annotations__.items()}


def check_couplings(p: PcasParams) -> None:
    """Checks that span sections, so that a run that cannot work stops before it starts.

    - The fbank must hold every time step (one second each; docs/method.md §2): the store covers
      ``fbank.target_length * fbank.frame_shift_ms`` of audio (with either front end), which must
      be at least ``train_audio.model.max_steps`` seconds, else the last steps own no audio token.
      (The encoder checks the exact token grid when it is built.)
    - ``train_audio.encoder: aisfx`` reads the log-mel its checkpoint was trained on:
      ``fbank.front_end`` must be ``aisfx``.
    - When the pipeline reads the demo (``data.root`` is ``data/demo``, where ``dvc.yaml``'s
      ``demo_data`` writes it), the demo's longest clip must fit the audio encoder: its frames
      (10 when ``demo.clips.long`` asks for clips, else 5) ``<= train_audio.model.max_steps``.
      Another ``data.root`` is not the demo, so ``demo`` does not bind it.

    Raises:
        ConfigError: naming both keys and their values.
    """
    m = p.train_audio.model
    covered_ms = p.fbank.target_length * p.fbank.frame_shift_ms
    if m.max_steps * 1000.0 > covered_ms + 1e-6:
        raise ConfigError(
            f"train_audio.model.max_steps ({m.max_steps}) x 1 s exceeds fbank.target_length "
            f"({p.fbank.target_length}) x frame_shift_ms ({p.fbank.frame_shift_ms}) = "
            f"{covered_ms / 1000.0:g} s: the last steps would own no audio")
    if p.train_audio.encoder == "aisfx" and p.fbank.front_end != "aisfx":
        raise ConfigError(
            f"train_audio.encoder 'aisfx' needs fbank.front_end 'aisfx' (the log-mel its "
            f"checkpoint was trained on), got fbank.front_end {p.fbank.front_end!r}")
    longest = p.demo.clips.longest()
    if Path(p.data.root) == Path(DEMO_ROOT) and longest > m.max_steps:
        raise ConfigError(f"demo.clips ask for {longest}-frame clips (demo.clips.long: 10 frames) "
                          f"but train_audio.model.max_steps is {m.max_steps}: the audio encoder "
                          f"would not take them")


def load_config(path: Path | str) -> PcasParams:
    """Read and validate the whole ``params.yaml``.

    Args:
        path: the YAML file.

    Returns:
        :class:`PcasParams` with every section typed; sections absent from the file take their
        documented defaults.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not valid YAML or not a mapping, an unknown section or key (with the closest
            valid name), a value of the wrong type or out of range, or a broken coupling
            (:func:`check_couplings`); messages start with the file name.
    """
    return parse_params(read_params_file(path), path)


def read_params_file(path: Path | str) -> Any:
    """The YAML document of ``path``, unvalidated (:func:`parse_params` checks it).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not valid YAML (the message has the line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    with path.open() as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err


def parse_params(raw: Any, path: Path | str) -> PcasParams:
    """Validate a ``params.yaml`` document read from ``path`` (named in messages) into
    :class:`PcasParams`, as :func:`load_config` does; ``raw`` is not modified.

    Raises:
        ConfigError: as :func:`load_config`.
    """
    try:
        params = parse(PcasParams, raw)
        check_couplings(params)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return params


def config_sections(config: PcasParams, *names: str) -> dict[str, dict[str, Any]]:
    """The named sections or dotted keys of ``config`` as plain YAML-able values, nested as in
    ``params.yaml``: ``"align"`` gives the whole section, ``"pseudo_masks.crf"`` that key alone.
    Keys absent from the file appear with their documented defaults, so what a stage records
    (store attrs, resume checkpoints) is the configuration it ran with.

    Raises:
        KeyError: an unknown section or key (names it).
    """
    out: dict[str, Any] = {}
    for name in names:
        section, *keys = name.split(".")
        if section not in SECTIONS:
            raise KeyError(f"unknown params section '{section}'")
        value: Any = getattr(config, section)
        for key in keys:
            if not hasattr(value, key):
                raise KeyError(f"unknown params key '{name}'")
            value = getattr(value, key)
        if not keys:
            out[section] = to_dict(value)
        elif section not in names:  # a whole section listed too holds the key already
            target = out.setdefault(section, {})
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = to_dict(value)
    return out


def merge_params(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge a params mapping ``update`` into ``base`` in place, nested sections key by key (as
    ``dvc exp run -S section.key=value`` overrides single keys); returns ``base``."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_params(base[key], value)
        else:
            base[key] = value
    return base
