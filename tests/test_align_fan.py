"""FAN back-end: the missing-weights error (weights are never available here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dre.align.fan import FAN_FILES, check_weights, checkpoint_dir
from dre.errors import DreError


def test_checkpoint_dir_follows_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert checkpoint_dir() == tmp_path / "th" / "hub" / "checkpoints"
    torch = pytest.importorskip("torch")
    assert Path(torch.hub.get_dir()) / "checkpoints" == checkpoint_dir()  # same rule as torch itself


def test_missing_weights_error_names_files_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    folder = tmp_path / "th" / "hub" / "checkpoints"
    from dre.align.runner import make_backend

    with pytest.raises(DreError) as ei:
        make_backend("fan", "cpu")
    msg = str(ei.value)
    assert str(folder) in msg and "s3fd-619a316812.pth" in msg and "2DFAN4-11f355bf06.pth.tar" in msg
    assert "--backend mediapipe" in msg
    # One file present: only the other is named.
    folder.mkdir(parents=True)
    (folder / "s3fd-619a316812.pth").write_bytes(b"x")
    with pytest.raises(DreError) as ei:
        check_weights()
    assert "2DFAN4-11f355bf06.pth.tar" in str(ei.value) and "s3fd-619a316812.pth" not in str(ei.value)
    (folder / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"x")
    assert check_weights() == folder
    assert set(FAN_FILES) == {"s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"}


@pytest.fixture(scope="module")
def fake_fan_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding *untrained* S3FD/FAN weights under the real file names.

    Not a stand-in for FAN's accuracy: it exercises our wiring (file lookup, FaceAlignment construction
    with the current enum and compile=False, detection → landmark calls, the batched path). The
    detector's classification and box-regression heads are zeroed with a bias that makes every anchor
    of the coarsest level a "face" (p = 0.88); a 128² image has one such anchor, so one box.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("face_alignment")
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    det = s3fd()
    with torch.no_grad():
        for name, mod in det.named_children():
            if "mbox" in name:
                mod.weight.zero_()
                mod.bias.zero_()
                if "conf" in name:
                    mod.bias.copy_(torch.tensor([2.0, 2.0, 2.0, -2.0]) if mod.bias.numel() == 4 else torch.tensor([2.0, -2.0]))
        det.conv7_2_mbox_conf.bias.copy_(torch.tensor([-1.0, 1.0]))
    torch.save(det.state_dict(), folder / "s3fd-619a316812.pth")
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    return home


@pytest.mark.slow  # ~1-2 min on 2 shared CPU cores (VGG-16 detector + hourglass FAN, untrained)
def test_fan_wiring_with_untrained_weights(fake_fan_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setenv("TORCH_HOME", str(fake_fan_home))
    from dre.align.fan import FanBackend

    be = FanBackend(device="cpu")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    single = be.detect(imgs[0], Path("a.png"))
    assert len(single) == 1
    face = single[0]
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()
    assert face.confidence == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-3)
    batch = be.detect_batch(imgs, [Path("a.png"), Path("b.png")])
    assert [len(b) for b in batch] == [1, 1]
    np.testing.assert_allclose(batch[0][0].landmarks, face.landmarks, atol=1e-3)  # batched = one by one
    mixed = be.detect_batch([imgs[0], imgs[1][:100]], [Path("a.png"), Path("c.png")])  # sizes differ
    np.testing.assert_allclose(mixed[0][0].landmarks, face.landmarks, atol=1e-3)
