"""The DiffusionRig denoising UNet (ADM-style, with a second FiLM for the global latent).

Topology, sizes and parameter names follow the published network exactly
(docs/reference.md) so that the official stage-1 checkpoint loads
strictly into it. Written from that description; no code was copied.

The arithmetic is ours, not the published one: attention through ``F.scaled_dot_product_attention``
on a token layout that is free for channels-last activations; the two FiLMs and the GroupNorm affine
folded into one per-(sample, channel) scale/shift applied in a single pass; GroupNorm statistics in
fp32 without an fp32 copy of the activation. The published arithmetic (einsum QKV attention with fp32
softmax, fp32-cast GroupNorm, the two FiLMs as separate passes) lives with the tests
(``tests/original_recipe.py``), which check that both compute the same function; the benchmarks time
both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dre.model.arch import ModelConfig
from dre.model.layers import (
    GroupNorm32,
    SampleDropout,
    downsample,
    group_norm_fp32,
    timestep_embedding,
    upsample,
    zero_,
)

def make_norm(groups: int, channels: int) -> GroupNorm32:
    """GroupNorm with ``gcd(groups, channels)`` groups.

    The published widths are all multiples of 32, so there this is exactly GroupNorm(32, C); narrow
    test/demo networks (e.g. 16 channels), which the original could not build, get the largest
    group count that divides their width instead of an error. Parameters do not depend on it.
    """
    return GroupNorm32(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """Residual block conditioned on the time embedding and the global latent (FiLM, time first).

    ``h = in_layers(x)``; ``h = GN(h)·(1+s_t)+b_t``; ``h = h·(1+s_z)+b_z``;
    ``out = skip(x) + conv_zero(dropout(silu(h)))``. With ``up``/``down`` the parameter-free resampling
    is applied to both paths between the first activation and the first conv.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        latent_dim: int,
        dropout: float,
        out_channels: int,
        groups: int,
        *,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        if up and down:
            raise ValueError("a ResBlock resamples up or down, not both")
        self.out_channels = out_channels
        self.resample = upsample if up else downsample if down else None
        self.in_layers = nn.Sequential(
            make_norm(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(latent_dim, 2 * out_channels))
        self.out_layers = nn.Sequential(
            make_norm(groups, out_channels),
            nn.SiLU(),
            SampleDropout(p=dropout),
            zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor, z: Tensor) -> Tensor:  # noqa: D102
        h = F.silu(self.in_layers[0](x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.in_layers[2](h)
        s_t, b_t = self.emb_layers(emb).chunk(2, dim=1)
        s_z, b_z = self.cond_emb_layers(z).chunk(2, dim=1)
        norm = self.out_layers[0]
        # GN(h)=n·γ+β; (n·γ+β)(1+s_t)+b_t then ·(1+s_z)+b_z  ==  n·[γ·A] + [β·A + B]
        # with A=(1+s_t)(1+s_z), B=b_t(1+s_z)+b_z: one pass over the activation instead of three.
        f = torch.float32
        gz = 1 + s_z.to(f)
        a = (1 + s_t.to(f)) * gz
        b = b_t.to(f) * gz + b_z.to(f)
        scale = (norm.weight.to(f) * a).to(h.dtype)[..., None, None]
        shift = (norm.bias.to(f) * a + b).to(h.dtype)[..., None, None]
        n = group_norm_fp32(h, norm.num_groups, None, None, norm.eps)
        h = torch.addcmul(shift, n, scale)
        h = self.out_layers[3](self.out_layers[2](F.silu(h)))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection (heads in the original's legacy QKV order).

    Parameters are 1×1 ``Conv1d`` (``qkv``: C→3C, ``proj_out``: C→C, zero-initialised), as in the
    published checkpoint. The fused ``qkv`` output is grouped by head, each head holding its own
    ``[q | k | v]`` channel blocks.
    """

    def __init__(self, channels: int, num_heads: int, num_head_channels: int, groups: int) -> None:
        super().__init__()
        if num_head_channels == -1:
            heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"attention channels {channels} not divisible by num_head_channels {num_head_channels}")
            heads = channels // num_head_channels
        if channels % heads:
            raise ValueError(f"attention channels {channels} not divisible by {heads} heads")
        self.channels = channels
        self.num_heads = heads
        self.norm = make_norm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        b, c, hh, ww = x.shape
        t, heads = hh * ww, self.num_heads
        ch = c // heads
        n = self.norm(x)
        if x.is_contiguous(memory_format=torch.channels_last):
            # token layout (B, T, C) is a free view of channels-last activations: 1×1 convs become GEMMs
            tok = n.permute(0, 2, 3, 1).reshape(b, t, c)
            qkv = F.linear(tok, self.qkv.weight.squeeze(-1), self.qkv.bias)
            q, k, v = qkv.view(b, t, heads, 3, ch).permute(3, 0, 2, 1, 4).unbind(0)  # (B, heads, T, ch)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c)
            out = F.linear(a, self.proj_out.weight.squeeze(-1), self.proj_out.bias)
            return x + out.view(b, hh, ww, c).permute(0, 3, 1, 2)
        # NCHW: keep (B, C, T) for the 1×1 convs, hand SDPA transposed views
        qkv = F.conv1d(n.reshape(b, c, t), self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(b, heads, 3, ch, t).transpose(-1, -2).unbind(2)  # (B, heads, T, ch)
        a = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, t)
        out = F.conv1d(a, self.proj_out.weight, self.proj_out.bias)
        return x + out.view(b, c, hh, ww)


class TimestepSequential(nn.Sequential):
    """A ``Sequential`` that passes the time embedding and latent to the blocks that take them."""

    def forward(self, x: Tensor, emb: Tensor, z: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb, z) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    """ε-prediction UNet: input ``cat(x_t, cond)`` (12 ch), output ε̂ (3 ch); see the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg  # validated when it was built (ModelConfig.__post_init__)
        mc, groups = cfg.model_channels, cfg.norm_groups
        mult = cfg.resolved_channel_mult()
        attn_ds = cfg.attention_downsample_factors()
        emb_dim = 4 * mc
        self.channels_last = False

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_dim, cfg.latent_dim, cfg.dropout, ch_out, groups, **kw)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, groups)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        ch = int(mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_chans.append(ch)
            if level != len(mult) - 1:
                if not cfg.resblock_updown:
                    raise ValueError("only resblock_updown=True (the published configuration) is supported")
                self.input_blocks.append(TimestepSequential(res(ch, ch, down=True)))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepSequential(res(ch, ch), attn(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(
            make_norm(groups, ch), nn.SiLU(), zero_(nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        )

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None, z: Tensor) -> Tensor:
        """ε̂ for noisy images ``x_t`` (B,3,H,W) at original timesteps ``t`` (B,), buffers ``cond`` (B,9,H,W)
        and global latents ``z`` (B, latent_dim). Output has the dtype autocast gives the last conv."""
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        h = x_t if cond is None else torch.cat([x_t, cond.to(x_t.dtype)], dim=1)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, z)
            skips.append(h)
        h = self.middle_block(h, emb, z)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, z)
        return self.out(h)
