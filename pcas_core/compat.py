"""Import shim for CPU-only PyTorch installs whose torchvision/torchaudio are CUDA builds.

On a machine where only a CPU build of torch can be installed (``torch.version.cuda is None``), the
package registry may still serve CUDA builds of torchvision and torchaudio. Their compiled
extensions then fail to load against CPU torch, and that breaks two imports pcas needs:

- ``import torchvision`` (imported by ``timm``) dies in ``torchvision._meta_registrations`` with
  ``RuntimeError: operator torchvision::nms does not exist``, because the meta kernels are
  registered for operators whose library never loaded.
- ``import torchaudio`` dies in ``torchaudio._extension`` with ``OSError: Could not load this
  library: .../_torchaudio.abi3.so`` (it needs ``libc10_cuda.so``).

pcas uses only the pure-Python parts of both packages (``torchvision.transforms`` through timm,
``torchaudio.compliance.kaldi.fbank``), so :func:`ensure_importable` imports them with exactly those
two failures tolerated: a fake-kernel registration for a torchvision operator that does not exist is
skipped, and a torchaudio extension library that cannot be loaded is reported as absent (which is
the state torchaudio itself handles when it is built without its extension). Calling an operator of
the missing extensions (``torchvision.ops.nms``, ``torchaudio.functional.forced_align``, ...) still
raises; pcas calls none of them.

On any torch build with CUDA or ROCm the function returns at once and changes nothing. On a CPU
build whose extensions load (for example the CPU wheels of PyTorch's own index) the tolerant paths
are never taken. ``import pcas_core`` calls it once.
"""

from __future__ import annotations

import importlib.util
import sys

import torch

__all__ = ["ensure_importable", "is_cpu_only_torch"]

_PATCHED: dict[str, bool] = {}


def is_cpu_only_torch() -> bool:
    """True when the installed torch was built without CUDA and without ROCm."""
    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def _operator_exists(qualname: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")
    except RuntimeError:
        return False
    return True


def _import_torchvision() -> bool:
    """Import torchvision, skipping fake kernels for operators its failed extension never defined.

    Returns:
        True if some registration had to be skipped (the extension is missing).
    """
    if "torchvision" in sys.modules:
        return False
    original = torch.library.register_fake
    skipped: list[str] = []

    def tolerant_register_fake(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::") and not _operator_exists(op):
            skipped.append(op)
            if args or "func" in kwargs:  # direct form register_fake(op, fn): nothing to register
                return None
            return lambda fn: fn  # decorator form: leave the function undecorated
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant_register_fake
    try:
        importlib.import_module("torchvision")
    except ImportError:
        return False  # not installed: nothing to repair, timm will say so itself
    finally:
        torch.library.register_fake = original
    return bool(skipped)


def _import_torchaudio() -> bool:
    """Import torchaudio with an extension library that cannot load treated as absent.

    torchaudio's ``_extension.utils._load_lib`` returns False for a missing library and raises for
    one that exists but cannot load. The package and its ``_extension`` subpackage are created
    without running their ``__init__``, ``_load_lib`` is wrapped to turn that ``OSError`` into
    False, and both ``__init__`` files are then run as usual.

    Returns:
        True if a library failed to load and was reported as absent.
    """
    if "torchaudio" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchaudio")
    if spec is None:
        return False
    package = importlib.util.module_from_spec(spec)
    sys.modules["torchaudio"] = package  # so that locating the subpackage runs no __init__
    failed: list[str] = []
    try:
        ext_spec = importlib.util.find_spec("torchaudio._extension")
        extension = importlib.util.module_from_spec(ext_spec)
        sys.modules["torchaudio._extension"] = extension
        utils = importlib.import_module("torchaudio._extension.utils")
        original = utils._load_lib

        def tolerant_load_lib(lib: str) -> bool:
            try:
                return original(lib)
            except OSError:
                failed.append(lib)
                return False

        utils._load_lib = tolerant_load_lib
        try:
            ext_spec.loader.exec_module(extension)
            spec.loader.exec_module(package)
        finally:
            utils._load_lib = original
    except BaseException:
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
        raise
    return bool(failed)


def ensure_importable() -> dict[str, bool]:
    """Make ``import timm`` and ``import torchaudio`` work on a CPU-only torch install.

    Does nothing (returns ``{}``) when torch has CUDA or ROCm. Otherwise imports torchvision and
    torchaudio as described in the module docstring; idempotent.

    Returns:
        ``{"torchvision": bool, "torchaudio": bool}``: whether each needed the tolerant path.

    Raises:
        Whatever the underlying import raises for any failure other than the two tolerated ones.
    """
    if not is_cpu_only_torch():
        return {}
    if not _PATCHED:
        _PATCHED["torchvision"] = _import_torchvision()
        _PATCHED["torchaudio"] = _import_torchaudio()
    return dict(_PATCHED)
