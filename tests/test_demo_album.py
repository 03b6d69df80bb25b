"""The demo album: deterministic, idempotent, safe to re-run, and real faces that Mediapipe finds."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dre import demo
from dre.errors import DreError


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    # the three sets the demo sheets name, as the demo_album rule writes them
    demo.build_album(root / "album", "personal", 6, 0)
    demo.build_album(root / "prior", "prior", 6, 0)
    demo.build_target(root / "target.jpg", 0)
    return root


def test_demo_sets_are_written(demo_root: Path) -> None:
    album = sorted(p.name for p in (demo_root / "album").glob("*.jpg"))
    prior = sorted(p.name for p in (demo_root / "prior").glob("*.jpg"))
    assert len(album) == 6 and len(prior) == 6
    # Round-robin over the three shipped portraits.
    assert {n.rsplit("_", 1)[0] for n in album} == {"astronaut", "camera", "grace_hopper"}
    assert (demo_root / "target.jpg").is_file() and (demo_root / "target.jpg.json").is_file()
    manifest = json.loads((demo_root / "album" / demo.MANIFEST_NAME).read_text())
    assert manifest["format"] == demo.FORMAT and len(manifest["variants"]) == 6
    assert (demo_root / "album").stat().st_mode & 0o777 != 0o700  # published, not a private temp folder


def test_sets_are_distinct_photos(demo_root: Path) -> None:
    """No photo appears twice across album, prior and target (independent random streams)."""
    paths = [*(demo_root / "album").glob("*.jpg"), *(demo_root / "prior").glob("*.jpg"), demo_root / "target.jpg"]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert len(set(digests)) == len(digests)


def test_variants_really_vary() -> None:
    """Two variants of the same source differ clearly (geometry and colour), yet stay the same photo scale."""
    a, b = [v for v in demo.sample_variants("personal", 6, seed=0) if v.source == "astronaut"]
    ia, ib = demo.render_variant(a), demo.render_variant(b)
    assert ia.dtype == np.uint8 and ia.ndim == 3 and ia.shape[2] == 3
    small = lambda x: np.asarray(  # noqa: E731
        __import__("PIL.Image", fromlist=["Image"]).fromarray(x).resize((64, 64)), dtype=np.float32
    )
    assert np.abs(small(ia) - small(ib)).mean() > 5.0
    # Every parameter comes from the seed: the same description renders the same pixels.
    assert np.array_equal(demo.render_variant(a), ia)


def test_deterministic_and_seed_dependent(tmp_path: Path, demo_root: Path) -> None:
    demo.build_album(tmp_path / "same", "personal", 6, seed=0)
    assert _digests(tmp_path / "same") == _digests(demo_root / "album")
    demo.build_album(tmp_path / "other", "personal", 6, seed=1)
    same = set(_digests(tmp_path / "other").values()) & set(_digests(demo_root / "album").values())
    assert same == set()


def test_rebuild_is_a_no_op_and_keeps_file_times(tmp_path: Path) -> None:
    """The workflow prepares the demo on every start: an unchanged album must not be rewritten."""
    out = tmp_path / "album"
    assert demo.build_album(out, "personal", 3, seed=0) is True
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert demo.build_album(out, "personal", 3, seed=0) is False
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # Different flags: the album is replaced as a whole (no stale photos left behind).
    assert demo.build_album(out, "personal", 2, seed=0) is True
    assert len(list(out.glob("*.jpg"))) == 2


def test_refuses_to_overwrite_a_user_folder(tmp_path: Path) -> None:
    user = tmp_path / "photos"
    user.mkdir()
    (user / "me.jpg").write_bytes(b"not ours")
    with pytest.raises(DreError, match="did not write.*refusing to replace"):
        demo.build_album(user, "personal", 2)
    assert (user / "me.jpg").read_bytes() == b"not ours"
    (tmp_path / "t.jpg").write_bytes(b"mine")
    with pytest.raises(DreError, match="not a demo target"):
        demo.build_target(tmp_path / "t.jpg")


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DreError, match="--n"):
        demo.build_album(tmp_path / "a", "personal", 0)
    with pytest.raises(DreError, match="kind"):
        demo.sample_variants("selfies", 2, 0)


def test_cli(tmp_path: Path, dre_cmd: list[str], cli_env: dict[str, str]) -> None:
    out = tmp_path / "album"
    cmd = [*dre_cmd, "demo-album", "--out", str(out), "--n", "2", "--kind", "prior", "--target", str(tmp_path / "t.jpg")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "written" in r.stderr and len(list(out.glob("*.jpg"))) == 2 and (tmp_path / "t.jpg").is_file()
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0 and "up to date" in r.stderr
    bad = subprocess.run([*dre_cmd, "demo-album", "--out", str(tmp_path), "--n", "1"], capture_output=True,
                         text=True, env=cli_env, timeout=120)
    assert bad.returncode == 2 and "refusing to replace" in bad.stderr


def test_mediapipe_finds_one_face_in_every_photo(demo_root: Path) -> None:
    """The demo is aligned for real with the offline Mediapipe back-end: every photo must have a face."""
    mp = pytest.importorskip("mediapipe")
    from PIL import Image

    paths = [*sorted((demo_root / "album").glob("*.jpg")), *sorted((demo_root / "prior").glob("*.jpg")),
             demo_root / "target.jpg"]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2) as mesh:
        counts = {p.name: len(mesh.process(np.asarray(Image.open(p).convert("RGB"))).multi_face_landmarks or [])
                  for p in paths}
    assert counts == {name: 1 for name in counts}


def test_album_folders_hold_only_photos_for_align(demo_root: Path) -> None:
    """`dre align` reports every non-image file of an album: the manifest is hidden so it is not one."""
    from dre.align.imageio import list_album

    for name in ("album", "prior"):
        images, others = list_album(demo_root / name)
        assert len(images) == 6 and others == []


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_demo_photos_align_on_the_face(demo_root: Path, tmp_path: Path) -> None:
    """Aligned with the real Mediapipe back-end, every crop looks like the other crops of its person.

    A landmark fit that lands elsewhere (Mediapipe once put camera()'s profile face on the ear) gives a
    crop that matches nothing: its median flip-invariant correlation with its siblings drops to ~0.2,
    against > 0.7 for good crops.
    """
    pytest.importorskip("mediapipe")
    from PIL import Image

    from dre import align

    for name in ("album", "prior"):
        align.run(align.Config(input=demo_root / name, output=tmp_path / name, size=64, backend="mediapipe",
                                min_face=32, progress=False))
        crops = {p.name: np.asarray(Image.open(p).convert("L"), dtype=np.float32)
                 for p in sorted((tmp_path / name).glob("*.png"))}
        assert len(crops) == 6
        for src in demo.SOURCES:
            keys = [k for k in crops if k.startswith(src)]
            for k in keys:
                sims = [max(_ncc(crops[k], crops[j]), _ncc(crops[k][:, ::-1], crops[j])) for j in keys if j != k]
                assert np.median(sims) > 0.5, (name, k, sims)


def test_driving_frames_are_deterministic_small_steps_with_a_face(tmp_path: Path) -> None:
    """The demo's driving sequence: n frames of the target, each a little turned, shifted and relit."""
    assert demo.build_frames(tmp_path / "a", 4, 0) and not demo.build_frames(tmp_path / "a", 4, 0)
    demo.build_frames(tmp_path / "b", 4, 0)
    names = sorted(p.name for p in (tmp_path / "a").glob("*.jpg"))
    assert names == [f"frame_{k:03d}.jpg" for k in range(4)]
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    angles = [v.angle for v in demo.frame_variants(4, 0)]
    assert np.all(np.diff(angles) > 0) and angles[-1] - angles[0] <= 8.0 + 1e-9
    with pytest.raises(DreError, match="--n-frames must be 2 to 24"):
        demo.frame_variants(1)
    mp = pytest.importorskip("mediapipe")
    from PIL import Image

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2) as mesh:
        for n in names:
            found = mesh.process(np.asarray(Image.open(tmp_path / "a" / n).convert("RGB"))).multi_face_landmarks
            assert len(found or []) == 1, n
