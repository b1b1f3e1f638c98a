"""The mask-class cache: labels decoded once, reused while files are unchanged, redone when a mask
changes; notes come back from the cache; errors are never cached."""

import os

import numpy as np
import pytest
from PIL import Image

import pcas_core.data.labels as labels_module
from pcas_core.data.avsbench import read_label2idx
from pcas_core.data.dataset import open_dataset
from pcas_core.data.label_cache import CACHE_ENV
from pcas_core.data.labels import labels_from_masks
from pcas_core.data.palette import voc_palette
from pcas_core.data.problems import Problems
from layouts import box, make_avss, write_rgb_mask


@pytest.fixture
def avss(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return make_avss(tmp_path / "avss")


def _counting_decoder(monkeypatch):
    calls = []
    real = labels_module.decode_mask

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(labels_module, "decode_mask", counted)
    return calls


def test_second_open_decodes_no_mask_and_gives_the_same_labels(avss, monkeypatch, tmp_path):
    calls = _counting_decoder(monkeypatch)
    first = open_dataset({"root": str(avss), "img_size": 16})
    n_masks = int(first.has_mask().sum())
    assert len(calls) == n_masks == 26
    assert list((tmp_path / "cache" / "mask-classes").glob("*.npz"))
    calls.clear()
    second = open_dataset({"root": str(avss), "img_size": 16})
    assert calls == []
    np.testing.assert_array_equal(second.labels, first.labels)
    assert first.labels.sum() > 0


def test_changed_mask_is_decoded_again(avss, monkeypatch):
    first = open_dataset({"root": str(avss), "img_size": 16})
    l2i = first.label2idx
    calls = _counting_decoder(monkeypatch)
    path = avss / "v1s" / "trA" / "labels_rgb" / "0.png"  # trA: dog, only frame 0 annotated
    write_rgb_mask(path, box(l2i["cat"] - 1))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # even on coarse clocks
    second = open_dataset({"root": str(avss), "img_size": 16})
    assert calls == [str(path)]
    video = int(np.flatnonzero(second.metadata["uid"] == "trA")[0])
    assert second.labels[video, l2i["cat"] - 2] == 1 and second.labels[video, l2i["dog"] - 2] == 0
    assert first.labels[video, l2i["dog"] - 2] == 1


def test_notes_come_back_from_the_cache_and_errors_are_not_cached(avss):
    path = avss / "v1s" / "teA" / "labels_rgb" / "2.png"
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:4, :4] = (1, 2, 3)  # not a palette colour
    Image.fromarray(rgb).save(path)
    frames = open_dataset({"root": str(avss), "img_size": 16}).frames
    label2idx = read_label2idx(avss)

    def problems_of_labels():
        problems = Problems()
        labels_from_masks(frames, 5, label2idx, voc_palette(), problems=problems)
        return problems

    notes = [[(str(p.path), p.message) for p in problems_of_labels().notes] for _ in range(2)]
    assert notes[0] == notes[1] and [n[0] for n in notes[0]] == [str(path)]
    assert "palette" in notes[0][0][1]
    path.write_bytes(b"not a png")
    for _ in range(2):  # fails both times: a failure is not remembered as a result
        assert [str(p.path) for p in problems_of_labels().errors] == [str(path)]


def test_cache_off_writes_nothing(avss, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    calls = _counting_decoder(monkeypatch)
    for _ in range(2):
        open_dataset({"root": str(avss), "img_size": 16})
    assert len(calls) == 52
    assert not (tmp_path / "cache").exists()
