"""Synthetic H&E-like bone-marrow slides with exact truth, rendered at any region and scale.

The scene is defined analytically in micrometres, so any level-0 box can be rendered at any
downsample without ever holding the whole slide: writers render pyramids tile by tile and tests
get exact truth masks. Colour follows Beer-Lambert: RGB = glass * exp(-(h * H + e * E)), so a
brighter or dimmer glass (scanner drift) changes tissue and fat vacuoles consistently.

Content:
- marrow particles: a smooth random field thresholded, fading out towards the slide border;
- bone trabeculae: bands of a second field, eosinophilic, excluded from marrow space;
- hematopoietic tissue: pink matrix with dense hematoxylin nuclei (hashed cell grid);
- fat vacuoles: unstained discs (radius 12-45 µm) with a thin eosin membrane, inside marrow;
- debris: dark specks on the glass; stain vectors, glass level and vignetting vary per slide.

Truth classes (``TissueClass``): 0 outside marrow (glass, bone, debris), 1 hematopoietic, 2 adipose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from service.domain.geometry import Box
from service.domain.labels import TissueClass

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_MARROW_CELL_UM = 350.0  # correlation length of the marrow-particle field
_BONE_CELL_UM = 900.0
_NUCLEUS_CELL_UM = 7.0
_VACUOLE_CELL_UM = 70.0
_RING_UM = 1.2
_CANDIDATES = 5
SCENE_VERSION = 4  # bump when rendering changes (benchmark caches key on it)


def _hash01(ix: npt.NDArray[np.int64], iy: npt.NDArray[np.int64], salt: int) -> FloatArray:
    """A deterministic uniform [0, 1) value per integer lattice cell."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B1)) ^ (
        iy.astype(np.uint64) * np.uint64(0x85EBCA77)
    )
    h ^= np.uint64(salt * 0xC2B2AE3D & 0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    h *= np.uint64(0x297A2D39)
    h ^= h >> np.uint64(15)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


@dataclass(frozen=True)
class SyntheticScene:
    """A synthetic marrow slide. ``cellularity_target`` is approximate; truth is exact."""

    width_px0: int
    height_px0: int
    mpp: float = 0.5
    seed: int = 0
    cellularity_target: float = 50.0
    glass_level: float = 240.0
    marrow_fraction: float = 0.45
    bone: bool = True
    tissue: bool = True
    debris: bool = True
    vignetting: float = 0.06
    stain_jitter: float = 0.08
    noise_sigma: float = 2.0

    # ---- fields -------------------------------------------------------------------------
    @property
    def width_um(self) -> float:
        return self.width_px0 * self.mpp

    @property
    def height_um(self) -> float:
        return self.height_px0 * self.mpp

    def _coarse_grid(self, cell_um: float, salt: int) -> FloatArray:
        rng = np.random.default_rng([self.seed, salt])
        gh = int(math.ceil(self.height_um / cell_um)) + 4
        gw = int(math.ceil(self.width_um / cell_um)) + 4
        return rng.random((gh, gw))

    @cached_property
    def _marrow_grid(self) -> FloatArray:
        return self._coarse_grid(_MARROW_CELL_UM, 1)

    @cached_property
    def _bone_grid(self) -> FloatArray:
        return self._coarse_grid(_BONE_CELL_UM, 2)

    def _field(self, grid: FloatArray, cell_um: float, x_um: FloatArray,
               y_um: FloatArray) -> FloatArray:
        """A smooth field (cubic spline of a coarse random grid).

        On large regular 2-D sample grids it is evaluated exactly every few µm and linearly
        interpolated in between (the field varies over hundreds of µm).
        """
        step_um = float(x_um[0, 1] - x_um[0, 0]) if x_um.ndim == 2 and x_um.shape[1] > 1 else 0.0
        k = int(8.0 / step_um) if step_um > 0 else 0
        if k >= 2 and min(x_um.shape) > 4 * k:
            xc = np.append(x_um[0, ::k], x_um[0, -1])
            yc = np.append(y_um[::k, 0], y_um[-1, 0])
            gy, gx = np.meshgrid(yc, xc, indexing="ij")
            coords = np.stack([gy / cell_um + 1.5, gx / cell_um + 1.5])
            coarse = ndimage.map_coordinates(grid, coords, order=3, mode="nearest")
            ii = np.minimum(np.arange(x_um.shape[0]) / k, len(yc) - 1.0)
            jj = np.minimum(np.arange(x_um.shape[1]) / k, len(xc) - 1.0)
            # the last coarse sample sits at the true last position, not at a multiple of k
            ii[-1], jj[-1] = len(yc) - 1.0, len(xc) - 1.0
            gi, gj = np.meshgrid(ii, jj, indexing="ij")
            return np.asarray(ndimage.map_coordinates(coarse, [gi, gj], order=1, mode="nearest"))
        coords = np.stack([y_um / cell_um + 1.5, x_um / cell_um + 1.5])
        return np.asarray(ndimage.map_coordinates(grid, coords, order=3, mode="nearest"))

    @cached_property
    def _marrow_threshold(self) -> float:
        """Threshold of the marrow field giving roughly ``marrow_fraction`` coverage."""
        ys, xs = np.meshgrid(
            np.linspace(0, self.height_um, 96), np.linspace(0, self.width_um, 96), indexing="ij"
        )
        vals = self._marrow_value(xs, ys)
        return float(np.quantile(vals, 1.0 - self.marrow_fraction))

    def _marrow_value(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        f = self._field(self._marrow_grid, _MARROW_CELL_UM, x_um, y_um)
        # fade towards the border so particles sit on glass, as on a real smear/section
        bx = np.minimum(x_um, self.width_um - x_um) / max(self.width_um, 1.0)
        by = np.minimum(y_um, self.height_um - y_um) / max(self.height_um, 1.0)
        edge = np.clip(np.minimum(bx, by) / 0.12, 0.0, 1.0)
        return np.asarray(f * (0.55 + 0.45 * edge) - 0.35 * (1.0 - edge))

    def _bone_mask(self, x_um: FloatArray, y_um: FloatArray) -> BoolArray:
        if not self.bone:
            return np.zeros(x_um.shape, dtype=bool)
        b = self._field(self._bone_grid, _BONE_CELL_UM, x_um, y_um)
        return np.asarray(np.abs(b - 0.5) < 0.035)

    def _marrow_mask(self, x_um: FloatArray, y_um: FloatArray) -> BoolArray:
        if not self.tissue:
            return np.zeros(x_um.shape, dtype=bool)
        return np.asarray(self._marrow_value(x_um, y_um) > self._marrow_threshold)

    # ---- vacuoles ----------------------------------------------------------------------
    @cached_property
    def _vacuole_probability(self) -> float:
        fat = np.clip(1.0 - self.cellularity_target / 100.0, 0.0, 0.97)
        # union coverage of a Poisson disc process: 1 - exp(-density * mean area);
        # _CANDIDATES per cell of _VACUOLE_CELL_UM; mean area of a disc of radius 12-45 µm.
        mean_area = math.pi * (12.0**2 + 12.0 * 45.0 + 45.0**2) / 3.0
        density = -math.log(1.0 - fat * 1.08) / mean_area if fat * 1.08 < 1 else 1.0
        return float(min(1.0, density * _VACUOLE_CELL_UM**2 / _CANDIDATES))

    def vacuoles_in(self, x0_um: float, y0_um: float, x1_um: float, y1_um: float) -> FloatArray:
        """Vacuole discs (cx_um, cy_um, r_um) that may intersect the given µm rectangle."""
        if not self.tissue:
            return np.zeros((0, 3))
        c = _VACUOLE_CELL_UM
        ix = np.arange(math.floor(x0_um / c) - 1, math.floor(x1_um / c) + 2, dtype=np.int64)
        iy = np.arange(math.floor(y0_um / c) - 1, math.floor(y1_um / c) + 2, dtype=np.int64)
        mesh_y, mesh_x = np.meshgrid(iy, ix, indexing="ij")
        gx, gy = mesh_x.reshape(-1), mesh_y.reshape(-1)
        discs = []
        for k in range(_CANDIDATES):
            present = _hash01(gx, gy, self.seed * 31 + 10 + k) < self._vacuole_probability
            ox = _hash01(gx, gy, self.seed * 31 + 20 + k)
            oy = _hash01(gx, gy, self.seed * 31 + 30 + k)
            rr = 12.0 + 33.0 * _hash01(gx, gy, self.seed * 31 + 40 + k) ** 1.3
            cx, cy = (gx + ox) * c, (gy + oy) * c
            discs.append(np.stack([cx, cy, rr], axis=1)[present])
        d = np.concatenate(discs)
        if len(d) == 0:
            return d
        # keep discs whose centre lies well inside marrow and away from bone
        inside = self._marrow_value(d[:, 0], d[:, 1]) > self._marrow_threshold + 0.05
        inside &= ~self._bone_mask(d[:, 0], d[:, 1])
        return np.asarray(d[inside])

    # ---- rendering ---------------------------------------------------------------------
    def _stain(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        rng = np.random.default_rng([self.seed, 7])
        h = np.array([0.65, 0.70, 0.29]) + rng.normal(0, self.stain_jitter, 3)
        e = np.array([0.07, 0.99, 0.11]) + rng.normal(0, self.stain_jitter, 3)
        h, e = np.abs(h) / np.linalg.norm(h), np.abs(e) / np.linalg.norm(e)
        tint = np.array([1.0, 0.99, 1.0]) + rng.normal(0, 0.01, 3)
        return h, e, tint

    def _sample_grid(self, box: Box, step: float) -> tuple[FloatArray, FloatArray]:
        nx = int(math.ceil(box.w_px0 / step))
        ny = int(math.ceil(box.h_px0 / step))
        xs = (box.x_px0 + (np.arange(nx) + 0.5) * step) * self.mpp
        ys = (box.y_px0 + (np.arange(ny) + 0.5) * step) * self.mpp
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        return gx, gy

    def _classes(self, x_um: FloatArray, y_um: FloatArray) -> tuple[BoolArray, BoolArray, BoolArray,
                                                                     BoolArray]:
        """(marrow space, fat interior, membrane ring, bone) at the given points."""
        bone = self._bone_mask(x_um, y_um)
        marrow = self._marrow_mask(x_um, y_um) & ~bone
        fat = np.zeros(x_um.shape, dtype=bool)
        ring = np.zeros(x_um.shape, dtype=bool)
        if x_um.size == 0:
            return marrow, fat, ring, bone
        x0, x1 = float(x_um.min()), float(x_um.max())
        y0, y1 = float(y_um.min()), float(y_um.max())
        step = float(x_um[0, 1] - x_um[0, 0]) if x_um.shape[1] > 1 else 1.0
        for cx, cy, r in self.vacuoles_in(x0, y0, x1, y1):
            j0 = max(int((cx - r - x0) / step) - 1, 0)
            j1 = min(int((cx + r - x0) / step) + 2, x_um.shape[1])
            i0 = max(int((cy - r - y0) / step) - 1, 0)
            i1 = min(int((cy + r - y0) / step) + 2, x_um.shape[0])
            if j1 <= j0 or i1 <= i0:
                continue
            sx, sy = x_um[i0:i1, j0:j1], y_um[i0:i1, j0:j1]
            d = np.hypot(sx - cx, sy - cy)
            fat[i0:i1, j0:j1] |= d < r - _RING_UM
            ring[i0:i1, j0:j1] |= (d >= r - _RING_UM) & (d < r)
        fat &= ~ring  # membranes (septa) separate packed adipocytes
        # adipocytes are whole cells: at a particle's edge they bulge it, membrane included
        fat &= ~bone
        ring &= ~bone
        marrow |= fat | ring
        return marrow, fat, ring, bone

    def truth(self, box: Box, downsample: float = 1.0) -> npt.NDArray[np.uint8]:
        """Truth classes sampled at the centres of the output pixels."""
        x_um, y_um = self._sample_grid(box, downsample)
        marrow, fat, ring, _ = self._classes(x_um, y_um)
        out = np.zeros(x_um.shape, dtype=np.uint8)
        out[marrow] = TissueClass.HEMATOPOIETIC
        out[fat | ring] = TissueClass.ADIPOSE
        return out

    def render(self, box: Box, downsample: float = 1.0, supersample: bool = True
               ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """RGB uint8 and truth for a level-0 box at a downsample.

        Colour is area-averaged over up to 4x4 samples per pixel (as a scanner's optics and a
        pyramid's downsampling do) unless ``supersample`` is False (faster, point-sampled).
        """
        ss = max(1, min(int(round(downsample)), 4)) if supersample else 1
        x_um, y_um = self._sample_grid(box, downsample / ss)
        marrow, fat, ring, bone = self._classes(x_um, y_um)
        hema = marrow & ~fat & ~ring
        h_conc = np.zeros(x_um.shape)
        e_conc = np.zeros(x_um.shape)
        # hematopoietic matrix and nuclei on a hashed cell grid
        cx = np.floor(x_um / _NUCLEUS_CELL_UM).astype(np.int64)
        cy = np.floor(y_um / _NUCLEUS_CELL_UM).astype(np.int64)
        s = self.seed * 131
        u = _hash01(cx, cy, s + 1)

        def sub(k: int) -> FloatArray:
            return np.asarray((u * (1.0 + 7919.0 * k)) % 1.0)

        rad = 1.8 + 1.8 * u
        ox = (sub(2) - 0.5) * (_NUCLEUS_CELL_UM - 2 * rad)
        oy = (sub(3) - 0.5) * (_NUCLEUS_CELL_UM - 2 * rad)
        present = sub(4) < 0.8
        dx = x_um - (cx + 0.5) * _NUCLEUS_CELL_UM - ox
        dy = y_um - (cy + 0.5) * _NUCLEUS_CELL_UM - oy
        nucleus = present & (dx * dx + dy * dy < rad * rad)
        darkness = 0.9 + 0.6 * sub(5)
        e_conc[hema] = 0.28 + 0.15 * sub(6)[hema]
        h_conc[hema] = 0.10
        nuc = hema & nucleus
        h_conc[nuc] = darkness[nuc]
        e_conc[ring] = 0.30
        h_conc[ring] = 0.05
        # bone: eosinophilic lamellae with sparse osteocyte lacunae
        e_conc[bone] = 0.75 + 0.1 * np.sin(x_um[bone] * 0.15 + y_um[bone] * 0.05)
        h_conc[bone] = 0.04
        lacuna = bone & present & (dx * dx + dy * dy < (0.5 * rad) ** 2) & (sub(7) < 0.08)
        h_conc[lacuna] = 0.8
        if self.debris:
            dcx = np.floor(x_um / 60.0).astype(np.int64)
            dcy = np.floor(y_um / 60.0).astype(np.int64)
            dr = 2.0 + 5.0 * _hash01(dcx, dcy, s + 8)
            ddx = x_um - (dcx + 0.5) * 60.0
            ddy = y_um - (dcy + 0.5) * 60.0
            speck = (_hash01(dcx, dcy, s + 9) < 0.05) & (ddx * ddx + ddy * ddy < dr * dr)
            speck &= ~marrow & ~bone
            h_conc[speck] = 0.6
            e_conc[speck] = 0.5
        hvec, evec, tint = self._stain()
        od = h_conc[..., None] * hvec + e_conc[..., None] * evec
        # vignetting: brightness falls off radially from the slide centre
        rx = x_um / max(self.width_um, 1.0) - 0.5
        ry = y_um / max(self.height_um, 1.0) - 0.5
        light = self.glass_level * (1.0 - self.vignetting * (rx * rx + ry * ry) * 2.0)
        rgb = light[..., None] * tint * np.exp(-od * 2.3)
        if self.noise_sigma > 0:
            rng = np.random.default_rng([self.seed, box.x_px0, box.y_px0, int(downsample * 64)])
            rgb += rng.normal(0.0, self.noise_sigma, rgb.shape)
        if ss > 1:
            h, w = rgb.shape[0] // ss * ss, rgb.shape[1] // ss * ss
            rgb = rgb[:h, :w].reshape(h // ss, ss, w // ss, ss, 3).mean(axis=(1, 3))
        out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        truth: npt.NDArray[np.uint8]
        if ss == 1:
            truth = np.zeros(x_um.shape, dtype=np.uint8)
            truth[marrow] = TissueClass.HEMATOPOIETIC
            truth[fat | ring] = TissueClass.ADIPOSE
        else:
            truth = self.truth(box, downsample)[: out.shape[0], : out.shape[1]]
        # pad when supersampling trimmed a partial pixel
        if truth.shape != (out.shape[0], out.shape[1]):
            th, tw = truth.shape[0], truth.shape[1]
            oh, ow = out.shape[0], out.shape[1]
            pad = ((0, th - oh), (0, tw - ow), (0, 0))
            out = np.asarray(np.pad(out, pad, mode="edge"), dtype=np.uint8)
        return out, truth

    def render_rgb(self, box: Box, downsample: float = 1.0,
                   supersample: bool = True) -> npt.NDArray[np.uint8]:
        """RGB only (the writers' render callback)."""
        return self.render(box, downsample, supersample)[0]

    def truth_counts(self, downsample: float | None = None,
                     tile: int = 2048) -> tuple[int, int, int]:
        """(marrow px, adipose px, image px) of the whole slide sampled at ``downsample``.

        The default sampling step keeps ≤ ~64 Mpx (level 0 for small slides).
        """
        if downsample is None:
            downsample = max(1.0, math.sqrt(self.width_px0 * self.height_px0 / 64e6))
        marrow = fat = total = 0
        step = int(tile * downsample)
        for y in range(0, self.height_px0, step):
            for x in range(0, self.width_px0, step):
                b = Box(x, y, min(step, self.width_px0 - x), min(step, self.height_px0 - y))
                t = self.truth(b, downsample)
                marrow += int(np.count_nonzero(t))
                fat += int(np.count_nonzero(t == TissueClass.ADIPOSE))
                total += t.size
        return marrow, fat, total

    @cached_property
    def truth_cellularity_pct(self) -> float | None:
        marrow, fat, _ = self.truth_counts()
        return None if marrow == 0 else 100.0 * (marrow - fat) / marrow
