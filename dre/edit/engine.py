"""The batched edit engine: swap codes, re-render, encode latents, seed noise, sample with DDIM.

Every source × mode pair is one *job*; jobs are numbered source-major (job ``i·M + m`` is source
``i`` in mode ``m``) and run through the renderer and the sampler in chunks of ``batch_size``. Each
job's result depends only on its own inputs (its codes, its latent and its source's noise), never on
which other jobs share its chunk, so batching changes speed, not pictures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from dre.diffusion import ddim_invert, ddim_sample
from dre.edit.modes import Mode, with_shape
from dre.edit.rigspec import REF_TARGET
from dre.edit.rigcodes import edit_codes
from dre.face3d.codes import Buffers, FlameCodes
from dre.model.fast import eps_fn
from dre.model.precision import Precision


@dataclass
class EditPlan:
    """The codes of every job, and what they are rendered with."""

    stems: list[str]
    modes: list[Mode]
    source: "FlameCodes"  # (N): the source codes as rendered (album mean shape substituted when used)
    edited: "FlameCodes"  # (N·M), source-major
    tform: "torch.Tensor"  # (N, 3, 3) aligned-image px (at the render size) → 224 crop px
    center: "torch.Tensor"  # (N, 3) the source's FFHQ centre, computed with the rendered shape

    @property
    def n_sources(self) -> int:
        return len(self.stems)

    @property
    def n_jobs(self) -> int:
        return len(self.stems) * len(self.modes)

    def job(self, k: int) -> tuple[int, int]:
        """(source index, mode index) of job ``k``."""
        return divmod(k, len(self.modes))

    def job_sources(self) -> list[int]:
        return [k // len(self.modes) for k in range(self.n_jobs)]


def plan_edits(
    face_model,
    source: "FlameCodes",
    tform: "torch.Tensor",
    target: "FlameCodes | Mapping[str, FlameCodes]",
    modes: Sequence[Mode],
    stems: Sequence[str],
    mean_shape: "torch.Tensor | None" = None,
) -> EditPlan:
    """Swap the target's codes into every source for every mode, and apply the modes' rig terms.

    ``target``: the target's codes (one face per frame), or every reference the modes name
    (``{"target": ..., "<path>": ...}``).

    Re-centring choice (see docs/edits.md): the source's FFHQ centre is computed from the *rendered*
    source, i.e. with the album mean shape when one is used. The original computed it with the
    source's own shape and then rendered the mean shape, so even a pure lighting edit moved the head
    a little away from where the training buffers had it. Here an edit that does not change the
    geometry (``light``, ``latent``) renders the training buffers of the source.
    """
    if len(stems) != source.batch_size:
        raise ValueError(f"{len(stems)} stems for {source.batch_size} source codes")
    src = with_shape(source, mean_shape)
    with torch.no_grad():
        center = face_model.ffhq_center(src)
    refs = dict(target) if isinstance(target, Mapping) else {REF_TARGET: target}
    refs = {k: v.to(src.shape.device) for k, v in refs.items()}
    # the rig maths runs in float64: cast back to the renderer's dtype
    per_mode = [edit_codes(src, refs, m).to(src.shape.dtype) for m in modes]
    n, m_count = src.batch_size, len(modes)
    order = torch.tensor([m * n + i for i in range(n) for m in range(m_count)], device=src.shape.device)
    edited = FlameCodes.cat(per_mode).index(order)
    return EditPlan(list(stems), list(modes), src, edited, tform, center)


def _cat_buffers(parts: list["Buffers"]) -> "Buffers":
    return Buffers(**{k: torch.cat([getattr(p, k) for p in parts]) for k in ("rendered", "normal", "albedo", "alpha")})


def render_plan(face_model, plan: EditPlan, image_size: int, batch_size: int) -> tuple["Buffers", "Buffers"]:
    """(source buffers (N), edited buffers (N·M)), rendered in chunks on the face model's device.

    Every edited head is re-centred on its source's FFHQ centre. For modes that leave the geometry
    alone (light, latent) the edited mesh *is* the source mesh, so the shift is zero up to float
    rounding (~1e-7 of the head size) and the buffers are the source's.
    """
    src_parts, edit_parts = [], []
    job_src = plan.job_sources()
    with torch.no_grad():
        for a in range(0, plan.n_sources, batch_size):
            idx = list(range(a, min(a + batch_size, plan.n_sources)))
            src_parts.append(face_model.render(plan.source.index(idx), plan.tform[idx], image_size=image_size))
        for a in range(0, plan.n_jobs, batch_size):
            ks = list(range(a, min(a + batch_size, plan.n_jobs)))
            srcs = [job_src[k] for k in ks]
            edit_parts.append(
                face_model.render(plan.edited.index(ks), plan.tform[srcs], image_size=image_size, center=plan.center[srcs])
            )
    return _cat_buffers(src_parts), _cat_buffers(edit_parts)


def as_condition(buffers: "Buffers") -> "torch.Tensor":
    """The 9-channel condition as the model saw it in training: rounded through float16 like the LMDB."""
    return buffers.condition().to(torch.float16).to(torch.float32)


def noise_seed(seed: int, stem: str) -> int:
    """The seed of one source's noise: from the run seed and the source's file stem.

    Deriving it from the stem (not the position in the folder) keeps a photo's edits the same when
    other photos are added to or removed from the album.
    """
    digest = hashlib.sha256(f"dre-edit:{int(seed)}:{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def source_noise(seed: int, stems: Sequence[str], shape: tuple[int, int, int]) -> "torch.Tensor":
    """(N, C, H, W) standard normal noise, one draw per source (seeded by :func:`noise_seed`), made on the CPU."""
    return seeded_noise([noise_seed(seed, stem) for stem in stems], shape)


def seeded_noise(seeds: Sequence[int], shape: tuple[int, int, int]) -> "torch.Tensor":
    """(len(seeds), C, H, W) standard normal noise, one CPU generator per seed (device-independent)."""
    return torch.cat(
        [torch.randn((1, *shape), generator=torch.Generator(device="cpu").manual_seed(int(s)), dtype=torch.float32)
         for s in seeds]
    )


def _chunked(n: int, batch_size: int, fn: Callable[[int, slice], "torch.Tensor"]) -> "torch.Tensor":
    """``fn(chunk index, rows)`` over chunks of ``batch_size`` rows, concatenated (no autograd)."""
    with torch.inference_mode():
        return torch.cat([fn(c, slice(a, a + batch_size)) for c, a in enumerate(range(0, n, batch_size))])


def encode_latents(model, images: "torch.Tensor", batch_size: int) -> "torch.Tensor":
    """Global latents (B, latent_dim) of images in [-1, 1], chunked."""
    return _chunked(images.shape[0], batch_size, lambda c, s: model.encode(images[s]))


def invert_sources(
    model,
    diffusion,
    x0: "torch.Tensor",
    cond: "torch.Tensor",
    latent: "torch.Tensor",
    *,
    steps: int,
    batch_size: int,
    precision: Precision | None = None,
) -> "torch.Tensor":
    """x_T of each source by DDIM inversion under its own (unedited) buffers and latent."""
    return _chunked(x0.shape[0], batch_size, lambda c, s: ddim_invert(
        diffusion, eps_fn(model, cond[s], latent[s], precision), x0[s], respacing=f"ddim{steps}"))


def _sample(model, diffusion, x_T, cond, latent, *, steps: int, eta: float, batch_size: int,
            precision: Precision | None, chunk_seed: Callable[[int], int]) -> "torch.Tensor":
    """DDIM samples in chunks; with η > 0, chunk ``c``'s per-step noise is seeded with ``chunk_seed(c)``."""

    def chunk(c: int, s: slice) -> "torch.Tensor":
        gen = torch.Generator(device=x_T.device).manual_seed(chunk_seed(c)) if eta > 0 else None
        return ddim_sample(diffusion, eps_fn(model, cond[s], latent[s], precision), x_T[s], respacing=f"ddim{steps}",
                           eta=eta, clip_denoised=True, generator=gen)

    return _chunked(x_T.shape[0], batch_size, chunk)


def sample_jobs(
    model,
    diffusion,
    x_T: "torch.Tensor",
    cond: "torch.Tensor",
    latent: "torch.Tensor",
    *,
    steps: int,
    eta: float,
    batch_size: int,
    seed: int,
    precision: Precision | None = None,
) -> "torch.Tensor":
    """DDIM samples (B, 3, H, W) in [-1, 1] for every job, in chunks.

    With η = 0 (the default, as published) DDIM is deterministic given x_T, so chunking cannot change
    a job's picture. With η > 0 the per-step noise comes from one generator per chunk (seeded from
    ``seed`` and the chunk index): reproducible for the same ``batch_size``, not across batch sizes.
    """
    return _sample(model, diffusion, x_T, cond, latent, steps=steps, eta=eta, batch_size=batch_size,
                   precision=precision, chunk_seed=lambda c: noise_seed(seed, f"eta-chunk-{c}"))


def sample_seeded(
    model,
    diffusion,
    seeds: Sequence[int],
    cond: "torch.Tensor",
    latent: "torch.Tensor",
    *,
    steps: int,
    eta: float,
    batch_size: int,
    precision: Precision | None = None,
) -> "torch.Tensor":
    """DDIM samples of jobs that each start from the noise of their own seed (re-drawn failures).

    Every picture is a function of its own seed and conditions only: with η = 0 the jobs are batched;
    with η > 0 each job runs alone with a per-step generator seeded from its seed (``retry.eta_seed``),
    so any one of them can be reproduced from the recorded seed.
    """
    from dre.edit.retry import eta_seed

    x_T = seeded_noise(seeds, (3, *cond.shape[2:])).to(cond.device)
    return _sample(model, diffusion, x_T, cond, latent, steps=steps, eta=max(eta, 0.0),
                   batch_size=batch_size if eta <= 0 else 1, precision=precision,
                   chunk_seed=lambda k: eta_seed(seeds[k]))
