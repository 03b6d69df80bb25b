"""FAN back-end: face-alignment's S3FD detector + 2D-FAN-4, the landmarker DECA and EMOCA use.

Why it is the default: DECA's crop is computed from FAN's 68 points, so FAN landmarks keep the whole
chain (align → DECA crop → codes) as the published models expect. The weights are not in the
face-alignment wheel and the library downloads them at construction; compute nodes are offline, so we
never download: the files must already be in the torch hub cache (``$TORCH_HOME/hub/checkpoints``,
which the align rule points at ``<assets>/torch``), and a missing file is a :class:`DreError` naming it.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Sequence

import numpy as np

from dre.align.backends import Face, NoLandmarks
from dre.assets.catalog import FAN_FILES
from dre.errors import DreError

log = logging.getLogger(__name__)



def checkpoint_dir() -> Path:
    """Where face-alignment looks for its weights: ``torch.hub.get_dir()/checkpoints``.

    Computed as torch does (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``;
    then ``hub/checkpoints``) without importing torch, so a missing file is reported in a second.
    """
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def check_weights(folder: Path | None = None) -> Path:
    """Fail with the missing file names, the folder and the URLs when FAN's weights are absent."""
    folder = folder or checkpoint_dir()
    missing = [name for name in FAN_FILES if not (folder / name).is_file()]
    if missing:
        lines = "\n".join(f"  {name}  ({FAN_FILES[name]})" for name in missing)
        # the workflow sets TORCH_HOME=<assets>/torch, so <assets> is three levels up from the folder
        assets = folder.parents[2] if folder.parts[-3:] == ("torch", "hub", "checkpoints") else None
        fetch = f"dre assets fetch fan --assets {shlex.quote(str(assets))}" if assets else (
            "dre assets fetch fan --assets <assets>  (and set TORCH_HOME=<assets>/torch)"
        )
        raise DreError(
            f"--backend fan needs face-alignment's weights, missing from {folder}:\n{lines}\n"
            f"Get them with:\n  {fetch}\n(on a machine with network access; offline, download the two URLs "
            "elsewhere and run `dre assets add <files> --assets <assets>`). Or align without them: "
            "--backend mediapipe works offline (it ships its model; in the workflow set align: backend: mediapipe "
            "in config/config.yaml, or the album's backend column), or --backend sidecar."
        )
    return folder


class FanBackend:
    """S3FD boxes (score = confidence) → 2D-FAN-4 68 points; detection batched for same-size images."""

    name = "fan"

    def __init__(self, device: str = "auto") -> None:
        check_weights()
        try:
            import face_alignment  # optional: only the align environment installs it
        except ImportError as exc:
            raise DreError(
                f"--backend fan needs the face-alignment package (envs/align.yaml): {exc}; "
                "or use --backend mediapipe"
            ) from None
        import torch  # FAN only: the mediapipe and sidecar back-ends run without loading torch

        from dre.utils.device import resolve_device  # imports torch (see above)

        if Path(torch.hub.get_dir()) / "checkpoints" != checkpoint_dir():  # torch.hub.set_dir() was used
            check_weights(Path(torch.hub.get_dir()) / "checkpoints")
        dev = resolve_device(device)
        # flip_input=False as DECA uses it (and half the cost); compile only pays off on a GPU.
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=str(dev),
            flip_input=False,
            compile=dev.type == "cuda",
        )
        self.device = dev

    def _landmarks(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[Face]:
        if len(boxes) == 0:
            return []
        boxes = sorted(boxes, key=lambda b: -float(b[4]))
        lms, _scores, _ = self._fa.get_landmarks_from_image(
            image, detected_faces=boxes, return_landmark_score=True
        )
        if lms is None:
            return []
        return [Face(np.asarray(lm)[:, :2], float(b[4])) for lm, b in zip(lms, boxes)]

    def detect(self, image: np.ndarray, path: Path) -> list[Face]:
        boxes = self._fa.face_detector.detect_from_image(np.ascontiguousarray(image))
        return self._landmarks(image, list(boxes))

    def detect_batch(self, images: Sequence[np.ndarray], paths: Sequence[Path]) -> list[list[Face] | NoLandmarks]:
        """S3FD runs on a stacked batch when the images share a size (FFHQ folders), else one by one."""
        import torch  # FAN only (see FanBackend.__init__)

        if len(images) > 1 and len({im.shape for im in images}) == 1:
            batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                all_boxes = self._fa.face_detector.detect_from_batch(batch.to(self.device))
            return [self._landmarks(im, list(b)) for im, b in zip(images, all_boxes)]
        return [self.detect(im, p) for im, p in zip(images, paths)]
