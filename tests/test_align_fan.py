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
    from dre.align.backends import make_backend

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
