"""Problems found in a dataset folder, collected per video so that all of them can be reported at
once (``pcas check-data``), raised together before any long work, or skipped (``data.skip_bad``).

A problem is an ``error`` (the video cannot be used as it is: a missing or unreadable file, a wrong
frame count, ...) or a ``note`` (the video is used, with a change worth knowing about: audio
shorter than the clip is padded, mask colours outside the palette become background, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataError", "Problem", "Problems"]

MAX_LISTED = 20
"""Errors listed in a :class:`DataError` message (the rest are counted)."""


class DataError(ValueError):
    """A dataset folder has errors; the message lists them, each as ``path: problem``."""


@dataclass(frozen=True)
class Problem:
    """One problem: ``uid`` of the video ("" for the whole dataset), the file, what is wrong."""

    level: str
    uid: str
    path: str
    message: str

    def __str__(self) -> str:
        who = f" (video {self.uid})" if self.uid else ""
        return f"{self.path}: {self.message}{who}"


@dataclass
class Problems:
    """Collector of :class:`Problem` s, in the order found."""

    items: list[Problem] = field(default_factory=list)

    def error(self, uid: str, path: object, message: str) -> None:
        """Record an error of video ``uid`` ("" = the dataset) about file ``path``."""
        self.items.append(Problem("error", str(uid), str(path), message))

    def note(self, uid: str, path: object, message: str) -> None:
        """Record a note (the data is used; something was changed or is worth knowing)."""
        self.items.append(Problem("note", str(uid), str(path), message))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.level == "error"]

    @property
    def notes(self) -> list[Problem]:
        return [p for p in self.items if p.level == "note"]

    def bad_uids(self) -> set[str]:
        """uids of videos with at least one error."""
        return {p.uid for p in self.errors if p.uid}

    def raise_if_errors(self, what: str) -> None:
        """Raise :class:`DataError` listing every error (up to :data:`MAX_LISTED`); when some
        belong to single videos, the message says how to leave those out (``data.skip_bad``).

        Args:
            what: the dataset, for the first line of the message (e.g. its root folder).

        Raises:
            DataError: if any error was recorded.
        """
        errors = self.errors
        if not errors:
            return
        lines = [str(p) for p in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"... and {len(errors) - MAX_LISTED} more (run `pcas check-data` for all)")
        bad = len({p.uid for p in errors if p.uid})
        advice = (" (to leave those videos out: `data.skip_bad: true` in params.yaml, or "
                  "`dvc exp run -S data.skip_bad=true`)" if bad else "")
        raise DataError(f"{what}: {len(errors)} error(s) in {bad} video(s){advice}:\n  "
                        + "\n  ".join(lines))
