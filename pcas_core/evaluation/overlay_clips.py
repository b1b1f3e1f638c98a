"""The clips a run's pictures show, kept while the test split streams by.

Which clips is decided before the pass (:func:`pcas_core.evaluation.visualize.pick_overlay_frames`:
the choice of videos does not depend on the ground truth); during the pass only the rows of those
clips are kept (ground truth, prediction, audio logits), never every frame; at the end each clip
gives an overlay (the middle one of its frames where something sounds) and a strip of every
frame (:mod:`pcas_core.evaluation.clip_strip`), each frame at its own size read from its file,
in display colours that tell apart every class the pictures show
(:func:`pcas_core.evaluation.visualize.display_palette`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcas_core.data.images import open_image
from pcas_core.evaluation.clip_strip import ClipStrip
from pcas_core.evaluation.visualize import (Overlay, display_palette, mask_classes,
                                            pick_overlay_frames)

__all__ = ["OverlayClips"]


class OverlayClips:
    """The rows of the clips to draw, collected chunk by chunk (:meth:`update`), then drawn
    (:meth:`pictures`).

    Args:
        scored: the scored test frames in frame-table order (columns ``uid``, ``frame``,
            ``frame_path``; ``subset`` optional), grouped by video.
        n: clips wanted. uid_contains: substrings of uids to show first (as
            :func:`pcas_core.evaluation.visualize.pick_overlay_frames`).
        names: the scored label space (index = class index).

    Attributes:
        rows: (R,) int64 rows of ``scored`` kept: every frame of the chosen clips, in order.
    """

    def __init__(self, scored: pd.DataFrame, n: int, uid_contains: list[str],
                 names: list[str]) -> None:
        self.scored, self.names = scored, names
        self.n, self.uid_contains = n, uid_contains
        chosen = scored["uid"].iloc[pick_overlay_frames(scored, n, uid_contains)]
        self.rows = np.flatnonzero(scored["uid"].isin(set(chosen)).to_numpy())
        self._kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, rows: slice, gts: np.ndarray, shown: np.ndarray,
               logits: np.ndarray) -> None:
        """Keep what the pictures need of the chosen clips' frames among rows ``rows`` of
        ``scored`` (copies, so the chunk's arrays can go).

        Args:
            rows: consecutive rows of ``scored`` (a chunk of the pass).
            gts, shown: (m, H, W) uint8 ground truth and prediction of those rows, in the scored
                label space. logits: (m, C - 1) float step logits s_t of the ``audio`` store.
        """
        for i in self.rows[(self.rows >= rows.start) & (self.rows < rows.stop)]:
            j = int(i) - rows.start
            self._kept[int(i)] = (np.array(gts[j]), np.array(shown[j]),
                                  np.asarray(logits[j], np.float32).copy())

    def pictures(self) -> tuple[list[Overlay], list[ClipStrip], np.ndarray]:
        """The overlays (one frame per clip, the middle one of the frames where something
        sounds), the strips (every frame of each clip with the audio scores sigmoid(s_t)) and the
        (K, 3) uint8 display palette of every class they show.

        Raises:
            ValueError: a row of a chosen clip that :meth:`update` never got (names it); a frame
                file that cannot be read (names it).
        """
        missing = [int(i) for i in self.rows if int(i) not in self._kept]
        if missing:
            raise ValueError(f"pictures: {len(missing)} frames of the chosen clips were not "
                             f"collected (first: row {missing[0]}, "
                             f"{self.scored['frame_path'].iloc[missing[0]]})")
        k = len(self.names)
        sounding = np.zeros(len(self.scored), bool)  # the chosen clips' rows are all kept
        for i, (gt, _, _) in self._kept.items():
            sounding[i] = bool(mask_classes(gt, k))
        picked = pick_overlay_frames(self.scored, self.n, self.uid_contains, sounding)
        native: dict[int, np.ndarray] = {}

        def image(i: int) -> np.ndarray:
            if i not in native:
                path = self.scored["frame_path"].iloc[i]
                native[i] = np.asarray(open_image(path).convert("RGB"))
            return native[i]

        uids = self.scored["uid"].to_numpy()
        strips, classes = [], set()
        for i in picked:
            rows = [int(r) for r in self.rows if uids[r] == uids[i]]
            gts = np.stack([self._kept[r][0] for r in rows])
            shown = np.stack([self._kept[r][1] for r in rows])
            logits = np.stack([self._kept[r][2] for r in rows]).astype(np.float64)
            scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            strips.append(ClipStrip(str(uids[i]), [image(r) for r in rows], gts, shown, scores))
            classes.update(*(mask_classes(m, k) for m in (*gts, *shown)))
        overlays = [Overlay(f"{uids[i]}_{self.scored['frame'].iloc[i]}", image(int(i)),
                            self._kept[int(i)][0], self._kept[int(i)][1],
                            int(self.scored["frame"].iloc[i])) for i in picked]
        return overlays, strips, display_palette(classes, k)
