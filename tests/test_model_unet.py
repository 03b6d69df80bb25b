"""UNet / DiffusionRig architecture: sizes, parameter counts, init, conditioning order, fast path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dre.errors import DreError
from dre.model import DiffusionRig, ModelConfig, to_channels_last
from dre.model.layers import timestep_embedding
from dre.model.unet import AttentionBlock, ResBlock, UNet
from tests.original_recipe import attention_forward, resblock_forward, use_original_recipe, use_our_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def tiny_cfg(**kw) -> ModelConfig:
    base = dict(image_size=16, model_channels=16, norm_groups=8, channel_mult=(1, 2), latent_dim=8,
                attention_resolutions=(8,))
    base.update(kw)
    return ModelConfig(**base)


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Give every parameter (zero-initialised ones included) a random value so paths are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def inputs(cfg: ModelConfig, b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = cfg.image_size
    x = torch.randn(b, 3, s, s, generator=g)
    c = torch.randn(b, 9, s, s, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    z = torch.randn(b, cfg.latent_dim, generator=g)
    return x, t, c, z


# ---------------------------------------------------------------------------- sizes and counts


@pytest.mark.parametrize(
    "size,mult",
    [(64, (1, 2, 3, 4)), (128, (1, 1, 2, 3, 4)), (256, (1, 1, 2, 2, 4, 4))],
)
def test_default_channel_mult_and_shapes(size: int, mult: tuple[int, ...]) -> None:
    """Published widths and block layout per image size (structure only; forwards are tested below)."""
    cfg = ModelConfig(image_size=size)
    assert cfg.resolved_channel_mult() == mult
    with torch.device("meta"):
        unet = UNet(cfg)
    nrb = cfg.num_res_blocks
    # one down-sampling res-block between consecutive levels, one up-sampler per level but the first
    assert len(unet.input_blocks) == 1 + len(mult) * nrb + (len(mult) - 1)
    assert len(unet.output_blocks) == len(mult) * (nrb + 1)
    level_first = [unet.input_blocks[1 + lv * (nrb + 1)][0] for lv in range(len(mult))]
    assert [b.out_channels for b in level_first] == [128 * m for m in mult]
    downs = [b[0] for b in unet.input_blocks[1:] if isinstance(b[0], ResBlock) and b[0].resample is not None]
    ups = [b[-1] for b in unet.output_blocks if len(b) > 1 and isinstance(b[-1], ResBlock)]
    assert len(downs) == len(ups) == len(mult) - 1
    # attention exactly at 16² (2 encoder + 3 decoder blocks) + the middle block
    attn = [m for m in unet.modules() if isinstance(m, AttentionBlock)]
    assert len(attn) == 2 + 3 + 1
    level16 = int(math.log2(size // 16))
    assert all(isinstance(unet.input_blocks[1 + level16 * (nrb + 1) + j][1], AttentionBlock) for j in range(nrb))
    assert unet.middle_block[0].out_channels == 128 * mult[-1]


@pytest.mark.parametrize("size", [64, 128])
def test_tiny_real_forward_shapes(size: int) -> None:
    cfg = ModelConfig(image_size=size, model_channels=8, norm_groups=8, latent_dim=4)
    unet = UNet(cfg).eval()
    with torch.no_grad():
        out = unet(torch.randn(1, 3, size, size), torch.tensor([10]), torch.randn(1, 9, size, size), torch.randn(1, 4))
    assert out.shape == (1, 3, size, size) and torch.isfinite(out).all()


def test_parameter_count_of_published_configuration() -> None:
    """The published network has 133,400,835 UNet and 11,209,344 ResNet-18 parameters (docs/reference.md)."""
    with torch.device("meta"):
        model = DiffusionRig(ModelConfig())
        model50 = DiffusionRig(ModelConfig(encoder="resnet50"))
    unet = sum(p.numel() for p in model.denoisingUNet.parameters())
    enc = sum(p.numel() for p in model.encoder.parameters())
    assert unet == 133_400_835
    assert enc == 11_209_344
    assert unet + enc == 144_610_179  # "≈144.6 M"
    named = dict(model.denoisingUNet.named_parameters())
    assert sum(p.numel() for n, p in named.items() if ".cond_emb_layers." in n) == 1_680_640
    assert sum(p.numel() for n, p in named.items() if n.startswith("time_embed.")) == 328_704
    attn = [m for m in model.denoisingUNet.modules() if isinstance(m, AttentionBlock)]
    assert len(attn) == 6 and all(a.channels == 512 and a.num_heads == 1 for a in attn)
    assert sum(p.numel() for a in attn for p in a.parameters()) == 6_309_888
    assert sum(isinstance(m, ResBlock) for m in model.modules()) == 42
    assert sum(p.numel() for p in model50.encoder.parameters()) == 23_639_168


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(DreError, match="channel_mult"):
        ModelConfig(image_size=96)
    with pytest.raises(DreError, match="norm_groups"):
        ModelConfig(norm_groups=0)
    with pytest.raises(DreError, match="scale_shift"):
        ModelConfig(use_scale_shift_norm=False)
    with pytest.raises(DreError, match="encoder"):
        ModelConfig(encoder="vit")


def test_group_norm_groups() -> None:
    """32 groups everywhere in the published network; narrow networks use gcd(32, C) groups."""
    with torch.device("meta"):
        full = UNet(ModelConfig())
        narrow = UNet(ModelConfig(image_size=16, model_channels=16, channel_mult=(1, 3), attention_resolutions=(8,)))
    assert {m.num_groups for m in full.modules() if isinstance(m, torch.nn.GroupNorm)} == {32}
    got = {(m.num_channels, m.num_groups) for m in narrow.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert (16, 16) in got and (48, 16) in got and (64, 32) in got  # 64 = 48 + 16 decoder concat
    assert all(c % g == 0 and g == math.gcd(32, c) for c, g in got)


def test_config_dict_round_trip() -> None:
    cfg = tiny_cfg(num_head_channels=8, dropout=0.0)
    d = cfg.to_dict()
    assert isinstance(d["channel_mult"], list)
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(DreError, match="unknown"):
        ModelConfig.from_dict({**d, "bogus": 1})


# ---------------------------------------------------------------------------- init and forward


def test_zero_initialised_output_and_residual_branches() -> None:
    cfg = tiny_cfg()
    model = UNet(cfg).eval()
    x, t, c, z = inputs(cfg)
    with torch.no_grad():
        assert torch.count_nonzero(model(x, t, c, z)) == 0
    for m in model.modules():
        if isinstance(m, ResBlock):
            assert torch.count_nonzero(m.out_layers[3].weight) == 0
        if isinstance(m, AttentionBlock):
            assert torch.count_nonzero(m.proj_out.weight) == 0
    assert torch.count_nonzero(model.out[2].weight) == 0


def test_timestep_embedding_closed_form() -> None:
    t = torch.tensor([0, 1, 17, 999])
    emb = timestep_embedding(t, 128)
    half = 64
    for j in (0, 1, 5, 63):
        f = 10000.0 ** (-j / half)
        for b, tv in enumerate(t.tolist()):
            assert emb[b, j].item() == pytest.approx(math.cos(tv * f), abs=2e-4)
            assert emb[b, half + j].item() == pytest.approx(math.sin(tv * f), abs=2e-4)


def test_latent_and_x_start_paths_agree() -> None:
    cfg = tiny_cfg()
    model = DiffusionRig(cfg)
    randomize(model.denoisingUNet)
    model.eval()
    x, t, c, _ = inputs(cfg)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = model.encode(x0)
        assert z.shape == (2, cfg.latent_dim) and z.dtype == torch.float32
        a = model(x, t, c, x_start=x0)
        b = model(x, t, c, latent=z)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        model(x, t, c)


def test_latent_changes_output_and_dropout_only_in_train() -> None:
    cfg = tiny_cfg(dropout=0.5)
    model = UNet(cfg)
    randomize(model)
    x, t, c, z = inputs(cfg)
    model.eval()
    with torch.no_grad():
        a = model(x, t, c, z)
        assert not torch.allclose(a, model(x, t, c, z + 1.0))
        torch.testing.assert_close(a, model(x, t, c, z))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x, t, c, z), model(x, t, c, z))


def test_film_is_time_then_latent() -> None:
    """h = GN(h)·(1+s_t)+b_t, then ·(1+s_z)+b_z (not the other order, not summed)."""
    torch.manual_seed(0)
    block = ResBlock(16, 32, 8, 0.0, 16, 8)
    randomize(block, std=0.3)
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    emb = torch.randn(2, 32)
    z = torch.randn(2, 8)

    def manual(order: str) -> torch.Tensor:
        h = block.in_layers(x)
        s_t, b_t = block.emb_layers(emb).chunk(2, 1)
        s_z, b_z = block.cond_emb_layers(z).chunk(2, 1)
        n = block.out_layers[0]
        h = F.group_norm(h, n.num_groups, n.weight, n.bias, n.eps)
        pairs = [(s_t, b_t), (s_z, b_z)]
        if order == "latent_first":
            pairs.reverse()
        for s, b in pairs:
            h = h * (1 + s[..., None, None]) + b[..., None, None]
        h = block.out_layers[3](F.silu(h))
        return x + h

    want = manual("time_first")
    wrong = manual("latent_first")
    assert not torch.allclose(want, wrong, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(block(x, emb, z), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(resblock_forward(block, x, emb, z), want, atol=1e-5, rtol=1e-5)


def _plain_attention(x: torch.Tensor, blk: AttentionBlock) -> torch.Tensor:
    """Plain softmax attention, legacy head order: per head, channels [q | k | v] of the qkv output."""
    b, c, h, w = x.shape
    n = F.group_norm(x, blk.norm.num_groups, blk.norm.weight, blk.norm.bias, blk.norm.eps).reshape(b, c, h * w)
    qkv = torch.einsum("oc,bct->bot", blk.qkv.weight[..., 0], n) + blk.qkv.bias[None, :, None]
    heads = blk.num_heads
    ch = c // heads
    outs = []
    for hd in range(heads):
        blkqkv = qkv[:, hd * 3 * ch:(hd + 1) * 3 * ch]
        q, k, v = blkqkv[:, :ch], blkqkv[:, ch:2 * ch], blkqkv[:, 2 * ch:]
        att = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(ch), dim=-1)  # (b, t, s)
        outs.append((att @ v.transpose(1, 2)).transpose(1, 2))  # (b, ch, t)
    a = torch.cat(outs, dim=1)
    out = torch.einsum("oc,bct->bot", blk.proj_out.weight[..., 0], a) + blk.proj_out.bias[None, :, None]
    return x + out.reshape(b, c, h, w)


@pytest.mark.parametrize("heads,head_ch", [(1, -1), (2, -1), (4, -1), (1, 8)])
def test_sdpa_attention_equals_plain_softmax_reference(heads: int, head_ch: int) -> None:
    blk = AttentionBlock(32, heads, head_ch, 8)
    randomize(blk, std=0.2)
    x = torch.randn(2, 32, 6, 5)
    want = _plain_attention(x, blk)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), want, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(attention_forward(blk, x), want, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(blk(x.contiguous(memory_format=torch.channels_last)), want, atol=2e-5, rtol=1e-5)


def test_fast_recipe_and_channels_last_compute_the_original_function() -> None:
    cfg = tiny_cfg(num_heads=2)
    model = UNet(cfg)
    randomize(model)
    model.eval()
    x, t, c, z = inputs(cfg)
    with torch.no_grad():
        fast = model(x, t, c, z)
        use_original_recipe(model)
        orig = model(x, t, c, z)
        use_our_recipe(model)
        to_channels_last(model)
        cl = model(x, t, c, z)
    assert fast.abs().mean() > 1e-3
    torch.testing.assert_close(fast, orig, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cl, orig, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_close_to_fp32() -> None:
    cfg = tiny_cfg()
    model = UNet(cfg)
    randomize(model)
    model.eval()
    x, t, c, z = inputs(cfg)
    with torch.no_grad():
        ref = model(x, t, c, z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, c, z)
    assert low.dtype == torch.bfloat16  # the UNet leaves the cast to its caller (DiffusionRig returns fp32)
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 3e-2, rel.item()


def test_backward_reaches_every_parameter() -> None:
    cfg = tiny_cfg(dropout=0.0)
    model = DiffusionRig(cfg)
    randomize(model)
    model.train()
    x, t, c, _ = inputs(cfg)
    out = model(x, t, c, x_start=torch.rand(2, 3, 16, 16) * 2 - 1)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.slow
def test_torch_compile_matches_eager_and_keeps_state_dict_keys() -> None:
    """``maybe_compile`` compiles the UNet in place: same outputs, official state-dict keys."""
    from dre.model import maybe_compile

    cfg = tiny_cfg()
    model = DiffusionRig(cfg)
    randomize(model)
    model.eval()
    keys = list(model.state_dict())
    x, t, c, z = inputs(cfg)
    with torch.no_grad():
        eager = model(x, t, c, latent=z)
        maybe_compile(model, True)
        compiled = model(x, t, c, latent=z)
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


def test_precision_helpers_and_eps_fn() -> None:
    from dre.model import Precision, eps_fn, resolve_precision

    assert resolve_precision("auto", "cpu") == Precision("fp32", "cpu")
    assert resolve_precision("bf16", "cpu").dtype == torch.bfloat16
    assert resolve_precision("fp16", "cpu").make_scaler() is not None and resolve_precision("fp32", "cpu").make_scaler() is None
    with pytest.raises(DreError, match="precision"):
        resolve_precision("fp8", "cpu")
    cfg = tiny_cfg()
    model = DiffusionRig(cfg)
    randomize(model.denoisingUNet)
    model.eval()
    x, t, c, z = inputs(cfg)
    with torch.no_grad():
        want = model(x, t, c, latent=z)
        torch.testing.assert_close(eps_fn(model, c, z)(x, t), want)
        low = eps_fn(model, c, z, precision=resolve_precision("bf16", "cpu"))(x, t)
    assert low.dtype == torch.float32 and (low - want).norm() / want.norm() < 3e-2
