"""Mode parsing and code swaps: each mode replaces exactly its codes and nothing else."""

from __future__ import annotations

import pytest
import torch

from dre.edit.modes import parse_mode, parse_modes, swap_codes, with_shape
from dre.errors import DreError
from dre.face3d.codes import FlameCodes


def _codes(b: int, seed: int) -> FlameCodes:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return FlameCodes(shape=r(b, 100), tex=r(b, 50), exp=r(b, 50), pose=r(b, 6), cam=r(b, 3), light=r(b, 9, 3))


def test_parse_modes_order_names_and_combos():
    modes = parse_modes("exp, pose ,light,latent,pose+exp,EXP+light+latent")
    assert [m.name for m in modes] == ["exp", "pose", "light", "latent", "exp+pose", "exp+light+latent"]
    assert parse_mode("pose+exp") == parse_mode("exp+pose")
    assert parse_mode("light").moves_geometry is False and parse_mode("exp").moves_geometry is True
    assert parse_mode("latent").swaps_latent and not parse_mode("exp+pose").swaps_latent


@pytest.mark.parametrize(
    "text, needle",
    [("smile", "unknown mode component 'smile'"), ("exp,,pose", "empty mode"), ("exp+exp", "twice"),
     ("exp+pose,pose+exp", "listed twice"), ("", "empty mode"), ("exp+", "empty mode")],
)
def test_parse_modes_errors_name_the_flag(text, needle):
    with pytest.raises(DreError, match="--modes") as exc:
        parse_modes(text)
    assert needle in str(exc.value)


SWAPPED = {
    # mode: {code name: slice of the flat code vector that comes from the target}
    "exp": {"exp": slice(None), "pose": slice(3, 6)},
    "pose": {"pose": slice(0, 3)},
    "light": {"light": slice(None)},
    "latent": {},
    "exp+pose": {"exp": slice(None), "pose": slice(0, 6)},
    "exp+pose+light": {"exp": slice(None), "pose": slice(0, 6), "light": slice(None)},
}


@pytest.mark.parametrize("mode", list(SWAPPED))
def test_swap_changes_exactly_the_intended_codes(mode):
    src, tgt = _codes(4, 0), _codes(1, 1)
    before = src.clone()
    out = swap_codes(src, tgt, parse_mode(mode))
    for name in ("shape", "tex", "exp", "pose", "cam", "light"):
        s = getattr(src, name).reshape(4, -1)
        o = getattr(out, name).reshape(4, -1)
        t = getattr(tgt, name).reshape(1, -1).expand(4, -1)
        from_target = torch.zeros(s.shape[1], dtype=torch.bool)
        if name in SWAPPED[mode]:
            from_target[SWAPPED[mode][name]] = True
        assert torch.equal(o[:, from_target], t[:, from_target]), (mode, name)
        assert torch.equal(o[:, ~from_target], s[:, ~from_target]), (mode, name)
    # inputs untouched (swap returns a new object)
    for name in ("shape", "tex", "exp", "pose", "cam", "light"):
        assert torch.equal(getattr(src, name), getattr(before, name))


def test_swap_needs_one_target_and_with_shape_broadcasts():
    src = _codes(3, 0)
    with pytest.raises(ValueError):
        swap_codes(src, _codes(2, 1), parse_mode("exp"))
    ms = torch.arange(100, dtype=torch.float32)
    out = with_shape(src, ms)
    assert torch.equal(out.shape, ms.expand(3, -1)) and torch.equal(out.exp, src.exp)
    assert with_shape(src, None) is src
