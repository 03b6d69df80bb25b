# Edits: transfer expression / pose / lighting / latent from a target onto a personal album (main environment).


rule edit:
    """DDIM edits of every source photo of the album, one image per source x mode (x frame for sweeps and driven
    sequences, which are also animated as GIF and MP4), plus a grid and a table."""
    input:
        unpack(edit_inputs),
        assets=demo_assets_input,
    output:
        report(
            directory("results/edits/{edit}"),
            patterns=["{name,grid}.png", "{name}.gif"],
            category="Edits",
            labels={"edit": "{edit}"},
            caption="../report/edit.rst",
        ),
    log:
        "logs/edit/{edit}.log",
    benchmark:
        "benchmarks/edit/{edit}.tsv"
    params:
        assets=config["assets"],
        settings=edit_flags,
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre edit --model {input.model:q} --assets {params.assets:q} --source {input.aligned:q} "
        "--source-codes {input.codes:q} {params.settings} --out {output:q} "
        "> {log:q} 2>&1"


rule score:
    """Score a finished edit folder again (other thresholds or detector) without re-sampling: `dre score`."""
    input:
        edits="results/edits/{edit}",
        assets=demo_assets_input,
    output:
        directory("results/scores/{edit}"),
    log:
        "logs/score/{edit}.log",
    benchmark:
        "benchmarks/score/{edit}.tsv"
    params:
        assets=config["assets"],
        settings=score_flags,
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre score --edits {input.edits:q} --assets {params.assets:q} {params.settings} --out {output:q} "
        "> {log:q} 2>&1"


rule video_frames:
    """Decode an edit's driving clip (a video file in the sheet's target column) into PNG frames, which
    align_target then aligns like any folder of frames."""
    input:
        video=lambda wc: as_input(EDITS[wc.edit]["target"]),
    output:
        directory("results/frames/{edit}"),
    log:
        "logs/video_frames/{edit}.log",
    benchmark:
        "benchmarks/video_frames/{edit}.tsv"
    params:
        settings=stage_flags(config["video"]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre video-frames --video {input.video:q} {params.settings} --out {output:q} > {log:q} 2>&1"
