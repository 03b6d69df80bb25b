# Two-stage DiffusionRig training (main environment). Only the final exported model is a declared output:
# Snakemake deletes declared outputs before a job runs, so checkpoints live in the run folder (params),
# and rerunning the same command resumes from it (with --retries a SLURM wall-time kill continues).
# Snakemake deletes the declared log before a retry: keep_attempt_log (dre/launch.py) keeps each attempt's text
# as <log stem>.attemptN.log, so a retry never erases why the attempt before it stopped.

TRAIN_LOG = {
    1: "logs/train_stage1/{prior}.{extractor}.log",
    2: "logs/train_stage2/{album}.{extractor}.log",
}


rule train_stage1:
    """Generic prior: train UNet + global encoder on the prior's LMDBs (mixed by weight)."""
    input:
        lmdbs=prior_lmdbs,
    output:
        "results/models/stage1/{prior}.{extractor}/model.pt",
    log:
        TRAIN_LOG[1],
    benchmark:
        "benchmarks/train_stage1/{prior}.{extractor}.tsv"
    params:
        run_dir="results/runs/stage1/{prior}.{extractor}",
        lmdb_flags=prior_lmdb_flags,
        launcher=launcher(1),
        keep_log=keep_attempt_log(TRAIN_LOG[1]),
        settings=train_flags(1),
    threads: 8
    resources:
        **train_resources(1),
        mem_mb=64000,
        runtime=lambda wc, attempt: train_runtime(1) * attempt,
    conda:
        "../../envs/main.yaml"
    shell:
        "{params.keep_log} {params.launcher} train --stage 1 {params.lmdb_flags} --run-dir {params.run_dir:q} "
        "--out {output:q} {params.settings} >> {log:q} 2>&1"


rule train_stage2:
    """Personal prior: fine-tune the UNet on one album (encoder frozen), from a stage-1 model."""
    input:
        init=stage1_model,
        lmdb="results/lmdb/{album}.{extractor}.lmdb",
    output:
        "results/models/stage2/{album}.{extractor}/model.pt",
    log:
        TRAIN_LOG[2],
    benchmark:
        "benchmarks/train_stage2/{album}.{extractor}.tsv"
    params:
        run_dir="results/runs/stage2/{album}.{extractor}",
        launcher=launcher(2),
        keep_log=keep_attempt_log(TRAIN_LOG[2]),
        settings=train_flags(2),
    threads: 4
    resources:
        **train_resources(2),
        mem_mb=32000,
        runtime=lambda wc, attempt: train_runtime(2) * attempt,
    conda:
        "../../envs/main.yaml"
    shell:
        "{params.keep_log} {params.launcher} train --stage 2 --init {input.init:q} --lmdb {input.lmdb:q} "
        "--run-dir {params.run_dir:q} --out {output:q} {params.settings} >> {log:q} 2>&1"
