"""Label-space constants shared by pcas_core (AVSBench AVSS, 71 classes).

Class index 0 is background; foreground logit column k corresponds to class index k + 1.
"""

NUM_CLASSES = 71
NUM_FG = 70
IGNORE_INDEX = 255
