"""Which exceptions are a user's mistake, and the one message ``pcas`` prints for them.

pcas reports bad input by raising, with a message that names the file or the params key and what is
wrong: :class:`pcas_core.params.ConfigError` (params), :class:`pcas_core.data.problems.DataError`
(a dataset folder), :class:`pcas_core.data.video.VideoError` (a user's video),
:class:`pcas_core.runtime.resume.ResumeError`, and plain ``ValueError`` / ``FloatingPointError``
elsewhere (a checkpoint that is not one, models that do not fit together, a loss that became NaN
under the chosen learning rate). ``stages/cli.py`` turns those into one message on stderr and exit
status 1 (:func:`user_error_message`); any other exception is a bug and keeps its traceback.
``PCAS_DEBUG=1`` (or ``pcas --debug``) shows the traceback of user errors too.
"""

from __future__ import annotations

import dis
import os

__all__ = ["DEBUG_ENV", "debug_enabled", "user_error_message"]

DEBUG_ENV = "PCAS_DEBUG"
"""Environment variable: set to 1 (``pcas --debug`` sets it), every error keeps its traceback."""

_OWN_MODULES = ("pcas_core", "stages")


def debug_enabled() -> bool:
    """True when ``PCAS_DEBUG`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _raised_by_pcas(err: BaseException) -> bool:
    """``err`` was raised by a ``raise`` statement of pcas's own code: the innermost frame of its
    traceback is a pcas module and stopped at a RAISE_VARARGS instruction, not at a call or an
    operator whose C code raised (``int("x")``, NumPy broadcasting: a bug, not a checked input)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    if module.split(".")[0] not in _OWN_MODULES:
        return False
    return any(ins.offset == tb.tb_lasti and ins.opname == "RAISE_VARARGS"
               for ins in dis.get_instructions(tb.tb_frame.f_code))


def user_error_message(err: BaseException) -> str | None:
    """The message to print for ``err`` when it is a user error, else None (a bug: traceback).

    User errors are: any ``OSError`` (a file missing, unreadable or unwritable; shown as
    ``path: reason``), and ``ValueError`` (with its subclasses ConfigError, DataError,
    VideoError, ResumeError) or ``FloatingPointError`` raised by a ``raise`` statement of pcas's
    own code, whose messages name the key or file. A ``ValueError`` raised inside a library or by
    a built-in (NumPy broadcasting, ``int("x")``) is not: pcas did not check that input, so the
    traceback is what helps.

    Args:
        err: the exception that ended a command.

    Returns:
        The message (it may span lines, e.g. a DataError's list of files), or None.
    """
    if isinstance(err, OSError):
        if err.filename is not None and err.strerror:
            other = f" -> {err.filename2}" if err.filename2 is not None else ""
            return f"{err.filename}{other}: {err.strerror}"
        return str(err) or type(err).__name__
    if isinstance(err, (ValueError, FloatingPointError)) and _raised_by_pcas(err):
        return str(err) or type(err).__name__
    return None
