"""pcas_core: the PCAS method (looking, listening, segmentation) as a library.

Importing the package runs :func:`pcas_core.compat.ensure_importable`, which lets ``timm`` and
``torchaudio`` import on a CPU-only torch install and does nothing on a CUDA or ROCm install.
"""

from pcas_core.compat import ensure_importable

ensure_importable()

__version__ = "0.1.0"
