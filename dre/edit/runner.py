"""``run``: from flags (an :class:`EditConfig`) to a finished edit folder.

Loads the stage-2 model, the face model and the inputs, runs the batched engine and writes the folder
atomically. No config file is read here; the CLI (``dre/commands/__init__.py``) fills the dataclass.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from dre.diffusion import GaussianDiffusion, space_timesteps
from dre.edit import engine, outputs
from dre.edit.config import EditConfig
from dre.edit.inputs import (
    Face,
    codes_for_sources,
    extract_codes,
    list_sources,
    load_target,
    load_targets,
    resolve_mean_shape,
)
from dre.edit.modes import drive
from dre.edit.rigspec import REF_TARGET
from dre.edit.scoring import score_edits
from dre.edit.writer import EditResult, write_edit_folder
from dre.errors import DreError
from dre.face3d.face_model import FaceModel
from dre.model import load_model_file, resolve_precision, to_channels_last
from dre.safety.ownership import claim_dir
from dre.utils.device import resolve_device
from dre.utils.synthetic import is_synthetic_assets, warn_synthetic

log = logging.getLogger(__name__)


def faces_to_tensor(faces: list[Face], size: int) -> "torch.Tensor":  # noqa: F821
    """(N, 3, size, size) float32 in [-1, 1], resizing (Lanczos) faces aligned at another size."""
    arrs = [outputs.resize_square(f.image, size) for f in faces]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).to(torch.float32)
    return x / 127.5 - 1.0


def tform_to_size(tform: "torch.Tensor", faces: list[Face], size: int) -> "torch.Tensor":  # noqa: F821
    """Re-express crop transforms for images resized from their aligned size to ``size``².

    tform maps aligned-image pixels to crop pixels; a pixel p at ``size`` is p·(A/size) at the aligned
    size A, so the new transform is tform · diag(A/size, A/size, 1).
    """
    scale = [[f.image.shape[1] / size, f.image.shape[0] / size, 1.0] for f in faces]
    return tform @ torch.diag_embed(torch.tensor(scale, dtype=tform.dtype, device=tform.device))


def select_sources(faces: list[Face], stems: tuple[str, ...]) -> list[Face]:
    """The faces named by ``--source-stems`` (all when none are named), in file-name order."""
    if not stems:
        return faces
    have = {f.stem for f in faces}
    missing = [s for s in stems if s not in have]
    if missing:
        raise DreError(f"--source-stems: no aligned source photo {', '.join(map(repr, missing))} "
                       f"(the source has: {', '.join(sorted(have)[:20])}{' ...' if len(have) > 20 else ''})")
    return [f for f in faces if f.stem in set(stems)]


def check_steps(steps: int, num_timesteps: int, model_path: Path) -> None:
    """``--steps N`` samples with the ``ddimN`` respacing of the model's T steps, which needs an integer stride
    giving exactly N of them; otherwise a :class:`DreError` naming the flag and the nearest counts that work."""
    try:
        space_timesteps(num_timesteps, f"ddim{steps}")
    except DreError:
        counts = sorted({len(range(0, num_timesteps, s)) for s in range(1, max(num_timesteps, 2))})
        near = sorted(counts, key=lambda c: (abs(c - steps), c))[:2]
        raise DreError(f"--steps {steps}: the model {model_path} has {num_timesteps} diffusion steps and no even "
                       f"stride over them gives exactly {steps} DDIM steps; use e.g. "
                       f"{' or '.join(f'--steps {c}' for c in sorted(near))}") from None


def run(cfg: EditConfig) -> Path:
    """Edit every source photo in every mode; returns the output folder."""
    cfg.validate()
    claim_dir(cfg.out, inputs=cfg.inputs())  # before any work: refuse a folder dre did not write
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    model_path = Path(cfg.model)
    if not model_path.is_file():
        raise DreError(f"--model {model_path} does not exist")
    # cheap input checks first: a target without a face should fail before any network is loaded
    faces = select_sources(list_sources(Path(cfg.source)), cfg.source_stems)
    frames = load_targets(Path(cfg.target)) if cfg.target is not None else []
    modes = drive(cfg.frames(), len(frames))
    ref_faces = {r: load_target(Path(r)) for m in modes for r in m.references if r != REF_TARGET}
    model, meta = load_model_file(model_path, map_location=device)
    model = model.to(device).eval()
    trained_with = meta.get("extractor")
    if trained_with and trained_with != cfg.source_extractor:
        msg = (
            f"the model {model_path} was trained on {trained_with} buffers but --source-extractor is "
            f"{cfg.source_extractor}; edits will be rendered from codes the model never saw"
        )
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
    diffusion = GaussianDiffusion(meta["diffusion_config"])  # load_model_file's (published defaults: official)
    check_steps(cfg.steps, diffusion.num_timesteps, model_path)  # before extraction and rendering, not at sampling
    image_size = int(model.cfg.image_size)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        to_channels_last(model)

    face_model = FaceModel.from_assets(cfg.assets, device)
    synthetic = bool(is_synthetic_assets(cfg.assets) or getattr(face_model, "synthetic", False) or meta.get("synthetic"))
    if synthetic:
        warn_synthetic("dre edit")

    if cfg.source_codes is not None:
        faces, src_codes, src_tform = codes_for_sources(faces, Path(cfg.source_codes), cfg.source_extractor, device)
    else:
        src_codes, src_tform = extract_codes(
            faces, Path(cfg.assets), cfg.source_extractor, device, cfg.emoca_model, "--source"
        )
    src_tform = tform_to_size(src_tform.to(device), faces, image_size)
    refs = {}
    if frames:
        refs[REF_TARGET] = extract_codes(frames, Path(cfg.assets), cfg.target_extractor, device, cfg.emoca_model,
                                         "--target")[0]
    for name, face in ref_faces.items():
        refs[name] = extract_codes([face], Path(cfg.assets), cfg.target_extractor, device, cfg.emoca_model, name)[0]
    ms = resolve_mean_shape(cfg.mean_shape, meta, model_path)
    mean_shape = None if ms is None else torch.from_numpy(ms).to(device)

    stems = [f.stem for f in faces]
    if len(set(stems)) != len(stems):
        raise DreError(f"--source {cfg.source}: two source files share a file stem; output names would collide")
    plan = engine.plan_edits(face_model, src_codes.to(device), src_tform, refs, modes, stems, mean_shape)
    src_buf, edit_buf = engine.render_plan(face_model, plan, image_size, cfg.batch_size)
    src_cond = engine.as_condition(src_buf).to(device)
    edit_cond = engine.as_condition(edit_buf).to(device)

    x0 = faces_to_tensor(faces, image_size).to(device)
    tgt_img = faces_to_tensor(frames, image_size).to(device) if frames else None
    z_src = engine.encode_latents(model, x0, cfg.batch_size)
    z_tgt = engine.encode_latents(model, tgt_img, cfg.batch_size) if frames else None
    job_src = plan.job_sources()
    job_mode = [plan.modes[plan.job(k)[1]] for k in range(plan.n_jobs)]
    latent = torch.stack(
        [z_tgt[m.target_frame] if m.swaps_latent else z_src[job_src[k]] for k, m in enumerate(job_mode)]
    )
    if cfg.init == "inversion":
        x_T_src = engine.invert_sources(
            model, diffusion, x0, src_cond, z_src, steps=cfg.steps, batch_size=cfg.batch_size, precision=precision
        )
    else:
        x_T_src = engine.source_noise(cfg.seed, stems, (3, image_size, image_size)).to(device)
    x_T = x_T_src[job_src]
    t1 = time.perf_counter()
    images = engine.sample_jobs(
        model, diffusion, x_T, edit_cond, latent, steps=cfg.steps, eta=cfg.eta, batch_size=cfg.batch_size, seed=cfg.seed,
        precision=precision,
    )
    t2 = time.perf_counter()
    log.info("sampled %d edits (%d sources × %d modes) in %.1f s", plan.n_jobs, len(stems), len(modes), t2 - t1)

    images_np = images.float().cpu().numpy()
    noise_seeds = [engine.noise_seed(cfg.seed, s) for s in stems] if cfg.init == "noise" else [None] * len(stems)
    scored = None
    if cfg.scores:
        def draw(jobs: list[int], seeds: list[int]) -> np.ndarray:
            idx = torch.tensor(jobs, device=device)
            return engine.sample_seeded(
                model, diffusion, seeds, edit_cond[idx], latent[idx], steps=cfg.steps, eta=cfg.eta,
                batch_size=cfg.batch_size, precision=precision,
            ).float().cpu().numpy()

        scored = score_edits(cfg, plan=plan, faces=faces, targets=frames, images=images_np,
                             first_seeds=[noise_seeds[i] for i in job_src], image_size=image_size,
                             synthetic=synthetic, draw=draw)
        images_np = scored.images

    result = EditResult(
        settings=cfg,
        plan=plan,
        faces=faces,
        targets=frames,
        images=images_np,
        source_buffers=src_buf,
        edit_buffers=edit_buf,
        noise_seeds=noise_seeds,
        scored=scored,
        meta={
            "model_meta": _plain_meta(meta),
            "precision": precision.name,
            "mean_shape": ms is not None,
            "synthetic": synthetic,
            "image_size": image_size,
            "device": str(device),
        },
    )
    write_edit_folder(Path(cfg.out), result, inputs=cfg.inputs())
    log.info("wrote %s in %.1f s", cfg.out, time.perf_counter() - t0)
    return Path(cfg.out)


def _plain_meta(meta: dict) -> dict:
    """The model's metadata as JSON-able values (configs as dicts, the mean shape left out: it is long)."""
    out = {}
    for k, v in meta.items():
        if k == "mean_shape":
            continue
        out[k] = v.to_dict() if hasattr(v, "to_dict") else v
    return out
