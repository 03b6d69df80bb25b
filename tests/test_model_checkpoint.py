"""Model files: our format round trip, and official DiffusionRig state dicts in the published key layout."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from dre.diffusion import DiffusionConfig
from dre.errors import DreError
from dre.model import DiffusionRig, ModelConfig, infer_official_config, load_model_file, save_model_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def official_unet_layout(
    mc: int, mult: tuple[float, ...], nrb: int, attn_levels: set[int], in_ch: int, out_ch: int, latent: int
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Key names and shapes of the published UNet, written out from the published description
    (docs/reference.md: ADM layout, ``resblock_updown``, latent FiLM in every res-block), independently
    of ``dre.model.unet``."""
    emb = 4 * mc
    p = "denoisingUNet."
    yield p + "time_embed.0.weight", (emb, mc)
    yield p + "time_embed.0.bias", (emb,)
    yield p + "time_embed.2.weight", (emb, emb)
    yield p + "time_embed.2.bias", (emb,)

    def res(prefix: str, cin: int, cout: int):
        yield prefix + "in_layers.0.weight", (cin,)
        yield prefix + "in_layers.0.bias", (cin,)
        yield prefix + "in_layers.2.weight", (cout, cin, 3, 3)
        yield prefix + "in_layers.2.bias", (cout,)
        yield prefix + "emb_layers.1.weight", (2 * cout, emb)
        yield prefix + "emb_layers.1.bias", (2 * cout,)
        yield prefix + "cond_emb_layers.1.weight", (2 * cout, latent)
        yield prefix + "cond_emb_layers.1.bias", (2 * cout,)
        yield prefix + "out_layers.0.weight", (cout,)
        yield prefix + "out_layers.0.bias", (cout,)
        yield prefix + "out_layers.3.weight", (cout, cout, 3, 3)
        yield prefix + "out_layers.3.bias", (cout,)
        if cin != cout:
            yield prefix + "skip_connection.weight", (cout, cin, 1, 1)
            yield prefix + "skip_connection.bias", (cout,)

    def attn(prefix: str, c: int):
        yield prefix + "norm.weight", (c,)
        yield prefix + "norm.bias", (c,)
        yield prefix + "qkv.weight", (3 * c, c, 1)
        yield prefix + "qkv.bias", (3 * c,)
        yield prefix + "proj_out.weight", (c, c, 1)
        yield prefix + "proj_out.bias", (c,)

    widths = [int(m * mc) for m in mult]
    ch = widths[0]
    yield p + "input_blocks.0.0.weight", (ch, in_ch, 3, 3)
    yield p + "input_blocks.0.0.bias", (ch,)
    skips, k = [ch], 1
    for lv, w in enumerate(widths):
        for _ in range(nrb):
            yield from res(f"{p}input_blocks.{k}.0.", ch, w)
            ch = w
            if lv in attn_levels:
                yield from attn(f"{p}input_blocks.{k}.1.", ch)
            skips.append(ch)
            k += 1
        if lv < len(widths) - 1:
            yield from res(f"{p}input_blocks.{k}.0.", ch, ch)
            skips.append(ch)
            k += 1
    yield from res(p + "middle_block.0.", ch, ch)
    yield from attn(p + "middle_block.1.", ch)
    yield from res(p + "middle_block.2.", ch, ch)
    k = 0
    for lv in reversed(range(len(widths))):
        for i in range(nrb + 1):
            yield from res(f"{p}output_blocks.{k}.0.", ch + skips.pop(), widths[lv])
            ch = widths[lv]
            j = 1
            if lv in attn_levels:
                yield from attn(f"{p}output_blocks.{k}.1.", ch)
                j = 2
            if lv and i == nrb:
                yield from res(f"{p}output_blocks.{k}.{j}.", ch, ch)
            k += 1
    yield p + "out.0.weight", (ch,)
    yield p + "out.0.bias", (ch,)
    yield p + "out.2.weight", (out_ch, ch, 3, 3)
    yield p + "out.2.bias", (out_ch,)


def official_state_dict(mc: int, mult, nrb: int, attn_levels: set[int], latent: int, encoder: str, seed: int = 0):
    """A random state dict in the official layout (UNet from the layout above, encoder = torchvision's)."""
    import torchvision

    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * 0.05 for k, s in official_unet_layout(mc, mult, nrb, attn_levels, 12, 3, latent)}
    enc = getattr(torchvision.models, encoder)(weights=None, num_classes=latent)
    for k, v in enc.state_dict().items():
        sd["encoder." + k] = v.clone() if v.dtype == torch.long else torch.randn(v.shape, generator=g) * 0.05 + (1.0 if "running_var" in k else 0.0)
    return sd


def test_published_layout_matches_ours_exactly() -> None:
    """Every key and shape of the 256² ResNet-18 model as the published layout has it (meta device)."""
    expected = dict(official_unet_layout(128, (1, 1, 2, 2, 4, 4), 2, {4}, 12, 3, 64))
    with torch.device("meta"):
        model = DiffusionRig(ModelConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("denoisingUNet.")}
    assert set(ours) == set(expected)
    assert ours == expected
    enc = {k for k in model.state_dict() if k.startswith("encoder.")}
    assert {"encoder.fc.weight", "encoder.bn1.running_mean", "encoder.bn1.num_batches_tracked",
            "encoder.layer4.1.conv2.weight"} <= enc
    assert infer_official_config({k: torch.empty(s, device="meta") for k, s in expected.items()} | {
        k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}) == ModelConfig()


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
def test_official_state_dict_loads_strictly(tmp_path: Path, encoder: str) -> None:
    # 64² default widths (1,2,3,4) at 32 channels, attention at 16² (level 2), as the original would build it
    sd = official_state_dict(32, (1, 2, 3, 4), 2, {2}, 16, encoder)
    path = tmp_path / "model005000.pt"
    torch.save(sd, path)
    model, meta = load_model_file(path)
    assert meta["official"] is True and meta["step"] == 5000 and meta["extractor"] == "deca"
    cfg = model.cfg
    assert cfg == ModelConfig(image_size=64, model_channels=32, latent_dim=16, encoder=encoder)
    assert meta["model_config"] == cfg
    assert meta["diffusion_config"] == DiffusionConfig()
    got = model.state_dict()
    assert set(got) == set(sd)
    for k in ("denoisingUNet.output_blocks.5.2.in_layers.2.weight", "denoisingUNet.middle_block.1.qkv.weight",
              "encoder.fc.weight", "encoder.bn1.running_var"):
        torch.testing.assert_close(got[k], sd[k], rtol=0, atol=0)
    assert not model.training


def test_official_state_dict_with_ddp_prefix_and_mismatches(tmp_path: Path) -> None:
    sd = official_state_dict(32, (1, 2, 3, 4), 2, {2}, 16, "resnet18")
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "ddp.pt")
    load_model_file(tmp_path / "ddp.pt")
    extra = dict(sd)
    extra["denoisingUNet.bogus.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(DreError, match="unexpected"):
        load_model_file(tmp_path / "extra.pt")
    missing = {k: v for k, v in sd.items() if "middle_block.1.proj_out" not in k}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(DreError, match="missing"):
        load_model_file(tmp_path / "missing.pt")


def test_unreadable_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DreError, match="cannot read"):
        load_model_file(bad)
    with pytest.raises(DreError, match="does not exist"):
        load_model_file(tmp_path / "nope.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(DreError, match="not a DiffusionRig"):
        load_model_file(tmp_path / "other.pt")
    torch.save({"format": "dre-model/99"}, tmp_path / "future.pt")
    with pytest.raises(DreError, match="format"):
        load_model_file(tmp_path / "future.pt")


def test_own_format_round_trip_and_weights_only(tmp_path: Path) -> None:
    cfg = ModelConfig(image_size=16, model_channels=16, norm_groups=8, channel_mult=(1, 2), latent_dim=8,
                      attention_resolutions=(8,))
    dcfg = DiffusionConfig(steps=100, schedule="cosine", p2_gamma=0.5, p2_k=2.0)
    model = DiffusionRig(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"stage": 1, "extractor": "emoca", "lmdbs": ["a.lmdb"], "mean_shape": None, "synthetic": True, "step": 7}
    path = tmp_path / "out" / "model.pt"
    save_model_file(path, model, cfg, dcfg, meta)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # atomic: no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "dre-model/1" and raw["ema_state_dict"] is None
    loaded, m = load_model_file(path)
    assert loaded.cfg == cfg and m["model_config"] == cfg and m["diffusion_config"] == dcfg
    assert m["stage"] == 1 and m["synthetic"] is True and m["weights"] == "raw" and m["official"] is False
    model.eval()
    x, c, z = torch.randn(2, 3, 16, 16), torch.randn(2, 9, 16, 16), torch.randn(2, 8)
    t = torch.tensor([5, 50])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, c, latent=z), model(x, t, c, latent=z), rtol=0, atol=0)
    # EMA weights: preferred by default, selectable
    save_model_file(path, model, cfg, dcfg, meta, ema_state=ema)
    loaded, m = load_model_file(path)
    assert m["weights"] == "ema"
    torch.testing.assert_close(loaded.state_dict()["encoder.fc.bias"], ema["encoder.fc.bias"])
    loaded, m = load_model_file(path, weights="raw")
    torch.testing.assert_close(loaded.state_dict()["encoder.fc.bias"], model.state_dict()["encoder.fc.bias"])


def test_meta_must_be_plain(tmp_path: Path) -> None:
    import numpy as np

    cfg = ModelConfig(image_size=16, model_channels=16, channel_mult=(1, 2), latent_dim=8, attention_resolutions=(8,))
    model = DiffusionRig(cfg)
    with pytest.raises(TypeError, match=r"meta\.mean_shape is a ndarray"):
        save_model_file(tmp_path / "m.pt", model, cfg, DiffusionConfig(), {"mean_shape": np.zeros(3)})
    with pytest.raises(TypeError, match=r"meta\.lmdbs\[0\] is a PosixPath"):
        save_model_file(tmp_path / "m.pt", model, cfg, DiffusionConfig(), {"lmdbs": [tmp_path]})
    with pytest.raises(TypeError, match=r"meta\.step is a float64"):
        save_model_file(tmp_path / "m.pt", model, cfg, DiffusionConfig(), {"step": np.float64(3)})
    assert not list(tmp_path.iterdir())
