"""``EditConfig``: every ``dre edit`` setting, defined once (flags and workflow keys derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dre.edit.modes import Mode, parse_mode, parse_modes, parse_sweep
from dre.edit.rigspec import REF_TARGET
from dre.errors import DreError
from dre.extract.config import EXTRACTORS, emoca_model_arg
from dre.model.arch import PRECISIONS
from dre.score.config import ScoreSettings
from dre.utils.cliconfig import nested, run_arg, setting

INITS = ("noise", "inversion")

@dataclass
class EditConfig:
    """Every ``dre edit`` flag, typed.

    The settings are the workflow config's ``edit:`` keys; the run arguments come from the model and
    album paths and from the edit's row of the edits sheet (modes, extractors, seed, init).
    """

    model: Path = run_arg(help="stage-2 model file (results/models/stage2/.../model.pt)")
    assets: Path = run_arg(help="assets folder")
    source: Path = run_arg(help="aligned source image or folder (an album's aligned folder)")
    out: Path = run_arg(help="output folder (results/edits/<edit>)")
    target: Path | None = run_arg(
        None, help="aligned target folder (with align.parquet) or aligned image; a folder of several aligned "
        "frames drives a sequence; not needed when every mode is parametric (pose:yaw=20, ...)",
    )
    modes: list[Mode] = run_arg(
        default_factory=lambda: parse_modes("exp"),
        parse=parse_modes,
        metavar="MODES",
        help="comma list of modes: exp, pose, light, latent, a+b combos, or rig terms such as pose:yaw=20, "
        "jaw:open=10, light:azimuth=-60,elevation=20, exp:towards=target,strength=0.5 (docs/rig.md)",
    )
    sweep: list[Mode] | None = run_arg(
        None,
        parse=parse_sweep,
        metavar="SPEC",
        help="one mode with one range A..B:N, e.g. pose:yaw=-30..30:7: N frames, animated (replaces --modes)",
    )
    source_stems: tuple[str, ...] = run_arg(
        (), metavar="STEMS", help="edit only these photos of --source (comma list of file stems; default: all)"
    )
    source_codes: Path | None = run_arg(None, help="codes.parquet of the sources (else extracted here)")
    source_extractor: str = run_arg("deca", choices=EXTRACTORS, help="FLAME codes of the sources")
    target_extractor: str = run_arg("deca", choices=EXTRACTORS, help="FLAME codes of the target")
    emoca_model: str = emoca_model_arg()
    mean_shape: Path | None = run_arg(
        None, help="mean_shape.npy of the album (written by `dre pack --mean-shape`)"
    )
    steps: int = setting(20, help="DDIM steps (ddimN respacing)")
    eta: float = setting(0.0, help="DDIM eta (0 = deterministic)")
    init: str = run_arg("noise", choices=INITS, help="start from seeded noise or from the DDIM inversion of the source")
    seed: int = run_arg(0, help="noise seed (per source photo, derived from this)")
    batch_size: int = setting(16, help="source × mode images sampled per batch")
    grid_buffers: bool = setting(
        False, help="also show the rendered buffers in grid.png (the buffers are always saved as npz)"
    )
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N")
    precision: str = setting(
        "auto", choices=PRECISIONS, help="UNet arithmetic: auto = bf16 on a GPU, fp32 on the CPU (byte-identical reruns)"
    )
    scores: bool = setting(
        True, help="score every picture (landmarks and re-extraction; docs/scores.md); --no-scores skips it"
    )
    retry_failed: int = setting(
        0, help="re-draw pictures flagged as failed (no face, residual noise) from new recorded seeds, at most "
        "this often each, keeping the best-scoring draw",
    )
    scoring: ScoreSettings = nested(ScoreSettings, title="scores (the workflow config's score: section)")

    def inputs(self) -> list:
        """Every path the edit reads (the output may not be, contain or lie inside any of them): the reference
        photos its modes name (``light:from=PATH``) included."""
        refs = dict.fromkeys(r for m in self.frames() for r in m.references if r != REF_TARGET)
        return [self.model, self.assets, self.source, self.target, self.source_codes, self.mean_shape, *refs]

    def frames(self) -> list[Mode]:
        """The modes to run: the sweep's frames, else ``modes``."""
        return list(self.sweep) if self.sweep else list(self.modes)

    def validate(self) -> None:
        if self.sweep and self.modes != [parse_mode("exp")]:
            raise DreError("--sweep replaces --modes; give one of them (a sweep's spec may combine swaps: "
                           "exp+pose:yaw=-30..30:7)")
        if self.target is None:
            reading = [m.name for m in self.frames() if m.reads_target]
            if reading:
                raise DreError(f"--target is needed by mode(s) {', '.join(dict.fromkeys(reading))}; only "
                               "parametric modes (pose:yaw=20, jaw:open=10, light:azimuth=-60) edit without one")
        if self.steps < 1:
            raise DreError(f"--steps must be at least 1 (got {self.steps})")
        if self.batch_size < 1:
            raise DreError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not 0.0 <= self.eta <= 1.0:
            raise DreError(f"--eta must be in [0, 1] (got {self.eta})")
        if self.init not in INITS:
            raise DreError(f"--init must be noise or inversion (got {self.init!r})")
        for flag, kind in (("--source-extractor", self.source_extractor), ("--target-extractor", self.target_extractor)):
            if kind not in EXTRACTORS:
                raise DreError(f"{flag} must be deca or emoca (got {kind!r})")
        if self.seed < 0:
            raise DreError(f"--seed must be non-negative (got {self.seed})")
        if self.retry_failed < 0:
            raise DreError(f"--retry-failed must be non-negative (got {self.retry_failed})")
        if self.retry_failed and not self.scores:
            raise DreError("--retry-failed needs the scores that flag failures; drop --no-scores")
        self.scoring.validate()
