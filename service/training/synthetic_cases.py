"""Training/evaluation cases rendered from the project's synthetic slide generator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SyntheticCase:
    """One rendered image at ``mpp`` µm/px with its truth (0 outside, 1 hematopoietic, 2 fat)."""

    name: str
    rgb: npt.NDArray[np.uint8]
    truth: npt.NDArray[np.uint8]


def render_cases(
    count: int, size_px: int, mpp: float, seed: int, prefix: str = "case"
) -> Iterator[SyntheticCase]:
    """``count`` images of ``size_px``² at ``mpp``, from varied scenes (cellularity, glass, stain).

    Alternates the scene's level-0 resolution (mpp/4 and mpp/2), so the model sees both the
    area-averaging of a 4× and of a 2× pyramid level.
    """
    from adapters.synthetic.scene import SyntheticScene
    from service.domain.geometry import Box

    rng = np.random.default_rng(seed)
    for i in range(count):
        downsample = 4.0 if i % 2 == 0 else 2.0
        mpp0 = mpp / downsample
        box_px0 = int(size_px * downsample)
        scene_px0 = int(box_px0 * rng.uniform(2.0, 3.5))
        scene = SyntheticScene(
            width_px0=scene_px0,
            height_px0=scene_px0,
            mpp=mpp0,
            seed=int(rng.integers(0, 2**31 - 1)),
            cellularity_target=float(rng.uniform(5.0, 95.0)),
            glass_level=float(rng.uniform(205.0, 250.0)),
            marrow_fraction=float(rng.uniform(0.25, 0.6)),
        )
        x0 = int(rng.integers(0, scene_px0 - box_px0))
        y0 = int(rng.integers(0, scene_px0 - box_px0))
        rgb, truth = scene.render(Box(x0, y0, box_px0, box_px0), downsample)
        yield SyntheticCase(f"{prefix}_{i:03d}", rgb, truth)
