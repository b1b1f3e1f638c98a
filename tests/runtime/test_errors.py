"""Which exceptions `pcas` reports as one message (bad input, checked by pcas) and which keep their
traceback (bugs: anything pcas did not raise on purpose)."""

import numpy as np
import pytest
import yaml

from pcas_core.data.clips import item_seed
from pcas_core.data.problems import Problems
from pcas_core.params import load_config
from pcas_core.params.parsing import parse
from pcas_core.params.training import AlignConfig
from pcas_core.runtime.errors import debug_enabled, user_error_message
from pcas_core.storage.weights import load_checkpoint


def _raised(call) -> BaseException:
    with pytest.raises(BaseException) as info:
        call()
    return info.value


def test_errors_pcas_raises_on_purpose_are_user_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    err = _raised(lambda: load_checkpoint(bad))
    assert user_error_message(err) == str(err) and str(bad) in str(err)
    err = _raised(lambda: parse(AlignConfig, {"rho": 2}, "align"))  # __post_init__, re-raised
    assert "align: need rho in [0, 1], got rho=2.0" == user_error_message(err)
    problems = Problems()
    problems.error("v1", tmp_path / "a.jpg", "truncated image")
    err = _raised(lambda: problems.raise_if_errors(str(tmp_path)))
    assert f"{tmp_path / 'a.jpg'}: truncated image (video v1)" in user_error_message(err)


def test_missing_and_unreadable_files_name_the_path(tmp_path):
    err = _raised(lambda: load_config(tmp_path / "none.yaml"))
    assert user_error_message(err) == f"{tmp_path / 'none.yaml'}: params file not found"
    err = _raised(lambda: open(tmp_path / "nowhere" / "x.json"))
    assert user_error_message(err) == f"{tmp_path / 'nowhere' / 'x.json'}: No such file or directory"


def test_bugs_keep_their_traceback():
    # a ValueError of a built-in inside pcas's code: an input pcas did not check, not a message
    err = _raised(lambda: item_seed("not a seed", 0))
    assert isinstance(err, ValueError) and user_error_message(err) is None
    assert user_error_message(_raised(lambda: int("x"))) is None
    assert user_error_message(_raised(lambda: np.zeros(2) + np.zeros(3))) is None  # NumPy's
    assert user_error_message(_raised(lambda: yaml.safe_load("a: [") and None)) is None  # a library's
    assert user_error_message(_raised(lambda: {}["key"])) is None
    assert user_error_message(_raised(lambda: np.zeros(2)[5])) is None


def test_debug_switch(monkeypatch):
    for value, on in (("1", True), ("yes", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv("PCAS_DEBUG", value)
        assert debug_enabled() is on, value
    monkeypatch.delenv("PCAS_DEBUG")
    assert not debug_enabled()
