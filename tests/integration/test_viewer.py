"""dicom-microscopy-viewer in headless Chromium renders a slide from Orthanc with our ANN.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) serves a small synthetic DICOM-WSI, our
``ann.dcm`` and, through its ServeFolders plugin, the test page (same origin as DICOMweb).
``tests/viewer/render.mjs`` (puppeteer-core) drives ``/usr/bin/chromium`` with SwiftShader;
the test then looks for both annotation-group colours inside the rendered slide.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from orthanc_fixture import ORTHANC_BINARY, dicomweb_plugin_path, start_orthanc, write_small_wsi
from PIL import Image
from pydicom import dcmread

from adapters.writers.dicom_ann import ADIPOCYTE_RGB, HEMATOPOIETIC_RGB, BulkAnnotationWriter
from service.domain.slide import DicomContext
from tests.helpers_outcome import PX0_PER_PX, fake_outcome

VIEWER_DIR = Path(__file__).resolve().parents[1] / "viewer"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")
SERVE_FOLDERS_PLUGIN = "/usr/share/orthanc/plugins/libServeFolders.so"
COLOUR_TOLERANCE = 40
MIN_COLOUR_PIXELS = 30
SLIDE_SEED, SLIDE_MPP, SLIDE_CELLULARITY = 3, 1.0, 40.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.orthanc,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium binary not installed"),
    pytest.mark.skipif(ORTHANC_BINARY is None, reason="Orthanc binary not installed"),
]


def _level0_context(files: list[Path]) -> tuple[DicomContext, int, int]:
    """The DicomContext of the largest level of the synthetic slide, and its size."""
    datasets = [dcmread(p, stop_before_pixels=True) for p in files]
    volume = [ds for ds in datasets if "VOLUME" in ds.ImageType]
    base = max(volume, key=lambda ds: int(ds.TotalPixelMatrixColumns))
    origin = base.TotalPixelMatrixOriginSequence[0]
    ctx = DicomContext(
        study_instance_uid=base.StudyInstanceUID,
        series_instance_uid=base.SeriesInstanceUID,
        sop_instance_uids=(base.SOPInstanceUID,),
        frame_of_reference_uid=base.FrameOfReferenceUID,
        patient_id=str(base.get("PatientID", "")),
        patient_name=str(base.get("PatientName", "")),
        study_date=str(base.get("StudyDate", "")),
        study_time=str(base.get("StudyTime", "")),
        container_identifier=str(base.get("ContainerIdentifier", "")),
        image_origin_mm=(float(origin.XOffsetInSlideCoordinateSystem),
                         float(origin.YOffsetInSlideCoordinateSystem)),
        image_orientation=tuple(float(v) for v in base.ImageOrientationSlide),  # type: ignore[arg-type]
    )
    return ctx, int(base.TotalPixelMatrixColumns), int(base.TotalPixelMatrixRows)


def _truth_class_map(width_px0: int, height_px0: int) -> np.ndarray:
    """The synthetic slide's own truth at 1/PX0_PER_PX, so the outlines sit on its tissue."""
    from adapters.synthetic.scene import SyntheticScene
    from service.domain.geometry import Box

    scene = SyntheticScene(width_px0, height_px0, mpp=SLIDE_MPP, seed=SLIDE_SEED,
                           cellularity_target=SLIDE_CELLULARITY)
    return scene.truth(Box(0, 0, width_px0, height_px0), PX0_PER_PX)


def _colour_pixels(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    distance = np.abs(rgb.astype(np.int32) - np.array(colour)).sum(axis=2)
    return distance <= COLOUR_TOLERANCE


def _stage_page(www: Path) -> None:
    www.mkdir(parents=True)
    for name in ("index.html", "viewer.js"):
        shutil.copy(VIEWER_DIR / name, www / name)
    modules = VIEWER_DIR / "node_modules"
    shutil.copy(modules / "dicomweb-client" / "build" / "dicomweb-client.js",
                www / "dicomweb-client.js")
    shutil.copytree(modules / "dicom-microscopy-viewer" / "dist" / "dynamic-import",
                    www / "dmv")


def test_viewer_renders_slide_with_both_annotation_groups(tmp_path: Path) -> None:
    if NODE is None:
        pytest.fail("node is required for the viewer test (Debian nodejs)")
    if not (VIEWER_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(f"npm packages missing: run `npm ci --prefix {VIEWER_DIR}`")
    files = write_small_wsi(tmp_path / "wsi", seed=SLIDE_SEED, mpp=SLIDE_MPP,
                            cellularity_target=SLIDE_CELLULARITY)
    ctx, width_px0, height_px0 = _level0_context(files)
    cmap = _truth_class_map(width_px0, height_px0)
    outcome = fake_outcome(cmap, dicom=ctx, job_key="viewer-test")
    (ann_path,) = BulkAnnotationWriter().write(outcome, tmp_path)
    ann_series = dcmread(ann_path, stop_before_pixels=True).SeriesInstanceUID

    www = tmp_path / "www"
    _stage_page(www)
    plugins = [p for p in (dicomweb_plugin_path(), SERVE_FOLDERS_PLUGIN) if p and os.path.exists(p)]
    extra = {
        "Plugins": plugins,
        "ServeFolders": {"AllowCache": False, "Extensions": {".wasm": "application/wasm",
                                                             ".mjs": "text/javascript"},
                         # the bundle loads its decoder worker and wasm from /static/js/
                         "Folders": {"/viewer": str(www), "/static/js": str(www / "dmv")}},
    }
    with start_orthanc(tmp_path / "orthanc", extra_config=extra) as orthanc:
        for path in [*files, ann_path]:
            orthanc.upload(path.read_bytes())
        url = (f"{orthanc.url}/viewer/index.html?study={ctx.study_instance_uid}"
               f"&slide={ctx.series_instance_uid}&ann={ann_series}")
        screenshot = tmp_path / "viewer.png"
        run = subprocess.run(
            [NODE, str(VIEWER_DIR / "render.mjs"), url, str(screenshot), "60000"],
            capture_output=True, text=True, timeout=180, cwd=VIEWER_DIR, check=False,
            env={**os.environ, "CHROMIUM": CHROMIUM or ""},
        )
    print(f"screenshot: {screenshot}")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print("\n".join(report["console"]))
    assert report["status"] == "ready", report
    assert report["groups"] == ["Hematopoietic tissue", "Adipocytes"]

    rgb = np.asarray(Image.open(screenshot).convert("RGB"))
    slide = np.abs(rgb.astype(np.int32)).sum(axis=2) > 30  # the page background is black
    ys, xs = np.nonzero(slide)
    assert slide.mean() > 0.5, "the slide's tiles were not rendered (mostly black page)"
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    inside = rgb[y0:y1, x0:x1]
    for colour in (HEMATOPOIETIC_RGB, ADIPOCYTE_RGB):
        count = int(_colour_pixels(inside, colour).sum())
        assert count >= MIN_COLOUR_PIXELS, f"colour {colour}: {count} px in the slide area"
