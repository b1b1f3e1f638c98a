"""Progress of long loops: periodic log lines where stderr is not a terminal (DVC's log), a tqdm bar
in a terminal, nothing from a loop that ends within seconds."""

import io
import logging
import re
import sys

import pytest
from typer.testing import CliRunner

from layouts import make_avss
from pcas_core.params import PcasParams
from pcas_core.params.parsing import to_dict
from pcas_core.runtime import progress
from pcas_core.runtime.progress import Progress, track
from stages.cli import app


class Clock:
    """A clock the test moves: ``tick`` seconds per unit of work."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def not_a_terminal(monkeypatch):
    monkeypatch.delenv("PCAS_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # isatty() is False, as under `dvc repro`


def _run(total: int, tick: float, caplog) -> list[str]:
    clock = Clock(tick)
    with caplog.at_level(logging.INFO, logger="pcas.test"), \
            Progress(total, "maps pass", unit="batch", log=logging.getLogger("pcas.test"),
                     clock=clock) as bar:
        for _ in range(total):
            clock.now += tick
            bar.update()
    return [r.getMessage() for r in caplog.records if r.name == "pcas.test"]


def test_a_70_second_loop_logs_every_10_percent(not_a_terminal, caplog):
    lines = _run(100, 0.7, caplog)  # 100 batches of 0.7 s: a line per 10 batches (7 s)
    assert len(lines) == 10, lines
    assert lines[0] == "maps pass: 10/100 batches (10 %), 7 s, ~1 min 03 s left"
    assert [int(re.search(r": (\d+)/", line).group(1)) for line in lines] == list(range(10, 101, 10))
    assert lines[-1] == "maps pass: 100/100 batches (100 %), 1 min 10 s"


def test_the_time_left_ignores_a_slow_first_unit(not_a_terminal, caplog):
    """A pool that takes 30 s to start does not make 1440 frames look like 12 hours."""
    clock = Clock(0.0)
    with caplog.at_level(logging.INFO, logger="pcas.test"), \
            Progress(1440, "pseudo-masks", unit="frame", log=logging.getLogger("pcas.test"),
                     clock=clock) as bar:
        for i in range(1440):
            clock.now += 30.0 if i == 0 else 0.1
            bar.update()
    lines = [r.getMessage() for r in caplog.records if r.name == "pcas.test"]
    assert lines[0] == "pseudo-masks: 1/1440 frames (0 %), 30 s"  # no pace yet
    assert lines[1] == "pseudo-masks: 145/1440 frames (10 %), 44 s, ~2 min 10 s left"


def test_a_slow_loop_logs_at_least_every_30_seconds(not_a_terminal, caplog):
    lines = _run(20, 100.0, caplog)  # 20 units of 100 s: 5 % each, 30 s are always up first
    assert len(lines) == 20
    times = [int(re.search(r"(\d+) min (\d+) s", line).group(1)) for line in lines]
    assert all(b - a <= 2 for a, b in zip(times, times[1:]))  # one line per unit of 100 s


def test_a_short_loop_writes_nothing(not_a_terminal, caplog):
    assert _run(100, 0.01, caplog) == []  # 1 s in all


def test_a_terminal_gets_a_bar_and_no_log_lines(monkeypatch, caplog):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("PCAS_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert _run(100, 0.7, caplog) == []
    bar = sys.stderr.getvalue()
    assert "maps pass:" in bar and "/100 [" in bar and "batch/s" in bar  # tqdm's bar
    assert bar.endswith("\r")  # cleared when the loop ends (leave=False)


def test_track_counts_units_per_item_and_stops_quietly_when_left(not_a_terminal, caplog):
    with caplog.at_level(logging.INFO, logger="pcas.test"):
        items = track([[1, 2], [3], [4, 5, 6]], total=6, desc="rows", unit="row", count=len,
                      log=logging.getLogger("pcas.test"))
        assert list(items) == [[1, 2], [3], [4, 5, 6]]
        unfinished = track(range(10), total=10, desc="left", log=logging.getLogger("pcas.test"))
        next(unfinished)
        unfinished.close()  # the consumer stopped: no closing line claims the loop ended
    assert not [r for r in caplog.records if r.name == "pcas.test"]


def test_a_stage_logs_its_pass_in_a_non_terminal(not_a_terminal, tmp_path, monkeypatch, caplog):
    """`pcas fbank` run as DVC runs it (stderr not a terminal) logs its pass periodically."""
    monkeypatch.setattr(progress, "MIN_LINE_S", 0.0)  # the tiny dataset takes well under 5 s
    root = make_avss(tmp_path / "avss")
    params = to_dict(PcasParams())
    params["data"].update(root=str(root), img_size=32)
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(app, ["fbank", "--params", str(tmp_path / "params.yaml"),
                                          "--out", str(tmp_path / "f.h5")])
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fbank: ")]
    assert [line.split(" (")[0] for line in lines] == [f"fbank: {i}/5 videos" for i in range(1, 6)]
    header = [r.getMessage() for r in caplog.records if r.name == "pcas.fbank"][:2]
    assert header[0].startswith("stage fbank on cpu, seed 0, data avss at ")
    assert "fbank.front_end=aisfx" in header[1] and "data.root=" in header[1]  # changed key
    assert all(len(r.getMessage()) < 300 for r in caplog.records if r.name == "pcas.fbank")
