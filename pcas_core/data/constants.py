"""Label-space constants shared by pcas_core (AVSBench AVSS, 71 classes).

Class index 0 is background; foreground logit column k corresponds to class index k + 1.
"""

NUM_CLASSES = 71
"""Number of AVSBench-semantic classes, background (index 0) included."""

NUM_FG = 70
"""Number of foreground classes (model logit columns); column k <-> class index k + 1."""

IGNORE_INDEX = 255
"""Class index of pixels that carry no label (skipped by losses and metrics)."""
