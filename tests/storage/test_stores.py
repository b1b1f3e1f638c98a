"""HDF5 stores: round trip, schema checks, row matching, atomic writes."""

import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from pcas_core.storage.atomic import atomic_path, write_json
from pcas_core.storage.weights import save_checkpoint
from pcas_core.storage.stores import read_store, read_store_attrs, store_rows, write_store


def _frames():
    return pd.DataFrame({"uid": ["a", "a", "b"], "frame": [0, 1, 0], "split": ["train", "train", "test"]})


def test_round_trip_keeps_keys_values_and_params(tmp_path):
    path = tmp_path / "audio.h5"
    data = {"audio_token": np.arange(6, dtype=np.float32).reshape(3, 2),
            "logits": np.ones((3, 70), dtype=np.float32)}
    write_store(path, "audio", _frames(), data, params={"train_audio": {"tvp": True}})
    keys, back = read_store(path, "audio")
    assert keys.to_dict("list") == _frames().to_dict("list")
    np.testing.assert_array_equal(back["audio_token"], data["audio_token"])
    assert read_store_attrs(path)["params"] == {"train_audio": {"tvp": True}}


def test_schema_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="bad.h5.*datasets"):
        write_store(path, "audio", _frames(), {"audio_token": np.zeros((3, 2))}, params={})
    with pytest.raises(ValueError, match="rows"):
        write_store(path, "audio", _frames(), {"audio_token": np.zeros((2, 2)),
                                                "logits": np.zeros((3, 70))}, params={})
    assert not path.exists()
    write_store(path, "pseudo_masks", _frames(), {"mask": np.zeros((3, 4, 4), np.uint8)}, params={})
    with pytest.raises(ValueError, match="expected a 'maps' store"):
        read_store(path, "maps")


def test_store_rows_matches_and_reports_missing(tmp_path):
    keys = _frames()
    wanted = keys.iloc[[2, 0]]
    assert store_rows(keys, wanted, source=tmp_path / "s.h5").tolist() == [2, 0]
    with pytest.raises(ValueError, match="s.h5.*not in the store"):
        store_rows(keys, pd.DataFrame({"uid": ["c"], "frame": [0]}), source=tmp_path / "s.h5")
    per_video = pd.DataFrame({"uid": ["b", "a"], "frame": [-1, -1], "split": ["test", "train"]})
    assert store_rows(per_video, keys, source=tmp_path / "v.h5").tolist() == [1, 1, 0]


def test_atomic_path_keeps_previous_output_on_failure(tmp_path):
    final = tmp_path / "out.json"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o002, 0o664, 0o775),
                                                        (0o077, 0o600, 0o700)])
def test_outputs_are_created_with_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    """Stores, checkpoints, metrics and output folders get the mode of any file the user makes
    (0666 / 0777 less the umask), so a group-readable umask gives group-readable results."""
    old = os.umask(umask)
    try:
        write_store(tmp_path / "s.h5", "pseudo_masks", _frames(),
                    {"mask": np.zeros((3, 4, 4), np.uint8)}, params={})
        save_checkpoint(tmp_path / "m.safetensors", torch.nn.Linear(2, 1), {"in": 2})
        write_json(tmp_path / "metrics" / "m.json", {"miou": 0.5})
        with atomic_path(tmp_path / "overlays", directory=True) as tmp:
            (tmp / "a.png").write_bytes(b"png")
    finally:
        os.umask(old)
    for name in ("s.h5", "m.safetensors", "metrics/m.json", "overlays/a.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == file_mode, name
    for name in ("overlays", "metrics"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == dir_mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "metrics", "overlays",
                                                          "s.h5"]  # no temporary left


def test_a_store_of_another_schema_version_is_refused(tmp_path):
    import h5py

    path = tmp_path / "pm.h5"
    write_store(path, "pseudo_masks", _frames(), {"mask": np.zeros((3, 4, 4), np.uint8)}, params={})
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
    with pytest.raises(ValueError, match=r"pm.h5: 'pseudo_masks' store has schema version 1 .*"
                                         r"reads version \d+; rebuild it"):
        read_store(path, "pseudo_masks")


def test_a_process_killed_mid_write_leaves_the_previous_store(tmp_path):
    """SIGKILL (no cleanup runs) while the second dataset of a new store is being written."""
    import subprocess
    import sys

    path = tmp_path / "audio.h5"
    old = {"audio_token": np.zeros((3, 2), np.float32), "logits": np.zeros((3, 70), np.float32)}
    write_store(path, "audio", _frames(), old, params={"run": "old"})
    child = f"""
import os, signal, h5py, numpy as np, pandas as pd
import pcas_core
from pcas_core.storage.stores import write_store
calls = []
original = h5py.Group.create_dataset
def dying(self, name, *args, **kwargs):
    calls.append(name)
    if len(calls) == 5:  # uid, split, frame, audio_token written; die inside 'logits'
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, name, *args, **kwargs)
h5py.Group.create_dataset = dying
frames = pd.DataFrame({{"uid": ["a", "a", "b"], "frame": [0, 1, 0], "split": ["train", "train", "test"]}})
write_store({str(path)!r}, "audio", frames, {{"audio_token": np.ones((3, 2), np.float32),
            "logits": np.ones((3, 70), np.float32)}}, params={{"run": "new"}})
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # really killed, not finished
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(p.name.startswith(".audio.h5.tmp-") for p in leftovers)
    _, back = read_store(path, "audio")
    np.testing.assert_array_equal(back["audio_token"], old["audio_token"])
    assert read_store_attrs(path)["params"] == {"run": "old"}
