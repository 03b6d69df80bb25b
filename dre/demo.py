"""The built-in demo's photos, made at run time from public-domain portraits that installed packages ship.

Why: FLAME/DECA/EMOCA and FFHQ cannot ship with the project, yet a new user must see the whole pipeline
run. The only face photos we may use offline are the three that scikit-image and matplotlib install
(``skimage.data.astronaut()`` — NASA, public domain; ``skimage.data.camera()`` — CC0; matplotlib's
``grace_hopper.jpg`` — US Navy, public domain). They are never committed as files: this module loads them
from the packages and writes deterministic *variants* (crop, small rotation, flip, colour and lighting
changes) so that alignment, extraction and training see a small album of distinct photos.

Three sets are made from independent random streams of one seed, so they never share a photo:
``personal`` (the stage-2 album), ``prior`` (stage-1 data, since FFHQ is not available) and ``target``
(one photo whose expression/pose/lighting the demo edit transfers).

Every set is written atomically with a hidden ``.demo_album.json`` manifest recording how it was made; an
existing set with the same manifest is left untouched, so the workflow's file times (and therefore its
rerun decisions) stay stable however often the demo is prepared.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from dre.errors import DreError
from dre.safety.atomic import atomic_path
from dre.safety.ownership import claim_file, owned_dir
from dre.utils.cliconfig import run_arg

MANIFEST_NAME = ".demo_album.json"  # hidden: album readers (dre align) skip dot files
FORMAT = "dre-demo-album/1"
KINDS = ("personal", "prior", "target")
# One independent random stream per kind (numpy SeedSequence spawn keys), so sets never overlap.
_STREAM = {"personal": 1, "prior": 2, "target": 3}
_MARGIN = 96  # reflect-padding (px) around a source so rotated crops never show empty corners


@dataclass(frozen=True)
class Source:
    """A package-shipped portrait and the box (x0, y0, x1, y1) around its head that variants crop from.

    The boxes were chosen so Mediapipe's face mesh finds the face in every variant: in ``camera()`` the
    face is small in a wide shot, so its box is a head-and-shoulders crop that the variant upsamples.
    """

    name: str
    licence: str
    box: tuple[int, int, int, int]
    loader: Callable[[], np.ndarray]


def _astronaut() -> np.ndarray:
    import skimage.data  # lazy: the Snakefile imports this module; photo libraries load only to build the album

    return np.asarray(skimage.data.astronaut(), dtype=np.uint8)


def _camera() -> np.ndarray:
    import skimage.data  # lazy, as in _astronaut

    grey = np.asarray(skimage.data.camera(), dtype=np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook  # lazy, as in _astronaut

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        return np.asarray(Image.open(fh).convert("RGB"), dtype=np.uint8)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("astronaut", "NASA photograph, public domain (skimage.data.astronaut)", (96, 0, 368, 272), _astronaut),
        Source("camera", "CC0 (skimage.data.camera)", (140, 40, 320, 220), _camera),
        Source("grace_hopper", "US Navy photograph, public domain (matplotlib grace_hopper.jpg)",
               (96, 48, 432, 384), _grace_hopper),
    )
}


@dataclass(frozen=True)
class Variant:
    """Everything that defines one demo photo (recorded in the manifest, so a photo can be re-made)."""

    file: str
    source: str
    scale: float  # crop side as a fraction of the source box side
    shift_x: float  # crop centre offset, as a fraction of the box side
    shift_y: float
    angle: float  # degrees, counter-clockwise
    flip: bool
    size: int  # output side (px)
    brightness: float
    contrast: float
    saturation: float
    gamma: float
    gains: tuple[float, float, float]  # white balance (R, G, B)
    light_strength: float  # directional lighting ramp amplitude
    light_angle: float  # direction of the ramp (radians)


def sample_variants(kind: str, n: int, seed: int, sources: tuple[str, ...] = tuple(SOURCES)) -> list[Variant]:
    """Draw ``n`` variant descriptions for ``kind``: round-robin over sources, parameters from the seed.

    The ranges differ by kind on purpose: the prior set is more varied (it stands in for a large generic
    data set), the personal set milder (one photo session), the target strongly lit and turned.
    """
    if kind not in KINDS:
        raise DreError(f"demo album kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if n < 1:
        raise DreError(f"--n must be at least 1 (got {n})")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise DreError(f"unknown demo source(s) {unknown}; choose from {', '.join(SOURCES)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM[kind],)))
    wide = kind == "prior"
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - local shorthand keeps ranges readable
        out.append(
            Variant(
                file=f"{src}_{i:03d}.jpg" if kind != "target" else f"target_{src}_{i:03d}.jpg",
                source=src,
                scale=u(0.8, 1.0),
                shift_x=u(-0.06, 0.06),
                shift_y=u(-0.06, 0.06),
                angle=u(-12, 12) if wide else u(-7, 7),
                flip=bool(rng.random() < 0.5),
                size=int(rng.integers(288, 417)),
                brightness=u(0.7, 1.3) if wide else u(0.85, 1.15),
                contrast=u(0.75, 1.25) if wide else u(0.9, 1.1),
                saturation=u(0.5, 1.4) if wide else u(0.8, 1.2),
                gamma=u(0.8, 1.25) if wide else u(0.9, 1.1),
                gains=(u(0.88, 1.12), u(0.92, 1.08), u(0.88, 1.12)),
                light_strength=u(0.3, 0.5) if kind == "target" else u(0.0, 0.35),
                light_angle=u(0, 2 * math.pi),
            )
        )
    return out


_cache: dict[str, np.ndarray] = {}


def _padded_source(name: str) -> np.ndarray:
    """The source image reflect-padded by ``_MARGIN`` (cached: every variant of a source reuses it)."""
    if name not in _cache:
        img = SOURCES[name].loader()
        _cache[name] = np.pad(img, ((_MARGIN, _MARGIN), (_MARGIN, _MARGIN), (0, 0)), mode="reflect")
    return _cache[name]


def render_variant(v: Variant) -> np.ndarray:
    """Make the photo a :class:`Variant` describes: (size, size, 3) uint8 RGB."""
    src = _padded_source(v.source)
    x0, y0, x1, y1 = SOURCES[v.source].box
    side = (x1 - x0) * v.scale
    cx = (x0 + x1) / 2 + v.shift_x * (x1 - x0) + _MARGIN
    cy = (y0 + y1) / 2 + v.shift_y * (y1 - y0) + _MARGIN
    img = Image.fromarray(src)
    # Rotate about the crop centre, then crop: the padding keeps the corners filled with image content.
    img = img.rotate(v.angle, resample=Image.BICUBIC, center=(cx, cy))
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    img = img.resize((v.size, v.size), resample=Image.BICUBIC, box=box)
    if v.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = np.asarray(img, dtype=np.float32) / 255.0
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = grey[..., None] + v.saturation * (x - grey[..., None])
    x = (x - 0.5) * v.contrast + 0.5
    x = x * v.brightness * np.asarray(v.gains, dtype=np.float32)
    # Directional light: a smooth multiplicative ramp across the image, as from a window to one side.
    yy, xx = np.mgrid[0 : v.size, 0 : v.size].astype(np.float32) / (v.size - 1) - 0.5
    ramp = xx * math.cos(v.light_angle) + yy * math.sin(v.light_angle)
    x = x * (1.0 + 2.0 * v.light_strength * ramp)[..., None]
    x = np.clip(x, 0.0, 1.0) ** v.gamma
    return np.round(x * 255.0).astype(np.uint8)


def _manifest(kind: str, n: int, seed: int, variants: list[Variant]) -> dict:
    return {
        "format": FORMAT,
        "kind": kind,
        "n": n,
        "seed": seed,
        "sources": {v.source: SOURCES[v.source].licence for v in variants},
        "note": "demo photos made at run time from package-shipped public-domain portraits; not for redistribution as a data set",
        "variants": [asdict(v) for v in variants],
    }


def _umask_mode(mode: int) -> int:
    """``mode`` filtered by the process umask: temp files are private (0600/0700), published ones not."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _publish(dest: Path, content: np.ndarray | str) -> None:
    """Write a photo (JPEG) or a manifest (text) atomically, with the permissions a plain file would get."""
    with atomic_path(dest) as tmp:
        if isinstance(content, str):
            tmp.write_text(content)
        else:
            Image.fromarray(content).save(tmp, format="JPEG", quality=92)
        os.chmod(tmp, _umask_mode(0o666))


def _up_to_date(manifest_path: Path, manifest: dict, files: list[Path]) -> bool:
    """``manifest_path`` holds ``manifest`` (compared as JSON) and every file it describes exists."""
    try:
        same = json.loads(manifest_path.read_text()) == json.loads(json.dumps(manifest))
    except (OSError, ValueError):
        return False
    return same and all(f.is_file() for f in files)


def _is_demo_album(folder: Path) -> bool:
    """An album this module wrote before folders carried dre's ownership marker (it has our manifest)."""
    return (folder / MANIFEST_NAME).is_file()


def _is_demo_target(path: Path) -> bool:
    try:
        return json.loads(path.with_name(path.name + ".json").read_text()).get("kind") == "target"
    except (OSError, ValueError, AttributeError):
        return False


def build_album(out: str | Path, kind: str = "personal", n: int = 12, seed: int = 0) -> bool:
    """Write the ``kind`` album (``n`` JPEGs + manifest) into folder ``out``; False if it was already there."""
    if kind == "target":
        raise DreError("the demo target is a single file: use build_target()")
    variants = sample_variants(kind, n, seed)
    return _write_variants(Path(out), _manifest(kind, n, seed, variants), variants)


def _write_variants(out: Path, manifest: dict, variants: list[Variant]) -> bool:
    """Render ``variants`` as JPEGs + ``manifest`` into folder ``out``, replaced atomically (an interrupted
    build leaves nothing partial); False, writing nothing, when ``out`` already holds this manifest."""
    if _up_to_date(out / MANIFEST_NAME, manifest, [out / v.file for v in variants]):
        return False
    with owned_dir(out, "dre demo-album", evidence=_is_demo_album) as tmp:
        for v in variants:
            _publish(tmp / v.file, render_variant(v))
        _publish(tmp / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        os.chmod(tmp, _umask_mode(0o777))
    return True


def build_target(out: str | Path, seed: int = 0, source: str = "grace_hopper") -> bool:
    """Write the demo edit's target photo to file ``out`` (+ ``<out>.json``); False if already there."""
    out = Path(out)
    (v,) = sample_variants("target", 1, seed, sources=(source,))
    manifest = _manifest("target", 1, seed, [v])
    side = out.with_name(out.name + ".json")
    if _up_to_date(side, manifest, [out]):
        return False
    if out.suffix.lower() not in (".jpg", ".jpeg"):
        raise DreError(f"demo target {out} must be a .jpg file name")
    claim_file(out, evidence=_is_demo_target, what=f"a demo target written by dre (with {side.name})", flag="--target")
    claim_file(side, evidence=lambda p: _is_demo_target(out), what="a demo target's manifest", flag="--target")
    _publish(out, render_variant(v))
    _publish(side, json.dumps(manifest, indent=1) + "\n")
    return True


def frame_variants(n: int, seed: int = 0, source: str = "grace_hopper") -> list[Variant]:
    """The demo's driving sequence: ``n`` frames of the demo target, drifting a little from one to the next.

    Frame k turns the photo by up to ±4°, slides it and swings the side light through 180°. FFHQ alignment
    undoes most of the turn and slide, so what drives the edit is mostly the light (and the small changes
    of pose and expression the extractor reads from the re-aligned crops), changing smoothly over time.
    """
    if not 2 <= n <= 24:
        raise DreError(f"--n-frames must be 2 to 24 (got {n})")
    (v,) = sample_variants("target", 1, seed, sources=(source,))
    out = []
    for k in range(n):
        t = k / (n - 1) - 0.5  # -0.5 .. 0.5
        out.append(replace(v, file=f"frame_{k:03d}.jpg", angle=v.angle + 8.0 * t, shift_x=v.shift_x + 0.04 * t,
                           light_angle=v.light_angle + math.pi * t, light_strength=max(v.light_strength, 0.4)))
    return out


def build_frames(out: str | Path, n: int = 4, seed: int = 0) -> bool:
    """Write the driving sequence (``n`` JPEG frames + manifest) into folder ``out``; False if already there."""
    variants = frame_variants(n, seed)
    return _write_variants(Path(out), _manifest("frames", n, seed, variants), variants)


@dataclass
class AlbumConfig:
    """What ``dre demo-album`` writes: one album (and optionally the demo edit's target photo)."""

    out: Path = run_arg(help="album folder to write (replaced atomically)")
    kind: str = run_arg("personal", choices=("personal", "prior"), help="which set: the stage-2 album or stage-1 data")
    n: int = run_arg(12, help="number of photos")
    seed: int = run_arg(0, help="seed of every variant (and of the target)")
    target: Path | None = run_arg(None, help="also write the demo edit's target photo to this .jpg file")
    frames: Path | None = run_arg(None, help="also write a short driving sequence (frames of the target) here")
    n_frames: int = run_arg(4, help="frames of the driving sequence")


def run(cfg: AlbumConfig) -> list[str]:
    """Write the album (and target); returns one status line per thing written or found up to date."""
    made = build_album(cfg.out, cfg.kind, cfg.n, cfg.seed)
    lines = [f"{cfg.out}: {'written' if made else 'up to date'} ({cfg.n} {cfg.kind} photos)"]
    if cfg.target:
        made = build_target(cfg.target, cfg.seed)
        lines.append(f"{cfg.target}: {'written' if made else 'up to date'} (demo target)")
    if cfg.frames:
        made = build_frames(cfg.frames, cfg.n_frames, cfg.seed)
        lines.append(f"{cfg.frames}: {'written' if made else 'up to date'} ({cfg.n_frames} frames of the target)")
    return lines
