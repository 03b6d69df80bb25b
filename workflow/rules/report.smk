# Figures and tables for `snakemake --report report.html`: the loss curve of every training run, counts by
# status of every alignment and extraction, and the edit grids (flagged on rule edit's output).
# They are cheap local jobs in rule all; `--report` needs them to exist, so run `snakemake` (all) first.


rule report_loss_stage1:
    """Loss curve of one stage-1 run (the metrics.csv next to its checkpoints) as a PNG."""
    input:
        model="results/models/stage1/{prior}.{extractor}/model.pt",
    output:
        report(
            "results/report/loss/stage1/{prior}.{extractor}.png",
            category="Training",
            subcategory="stage 1",
            caption="../report/loss.rst",
        ),
    log:
        "logs/report/loss/stage1/{prior}.{extractor}.log",
    benchmark:
        "benchmarks/report_loss_stage1/{prior}.{extractor}.tsv"
    params:
        metrics="results/runs/stage1/{prior}.{extractor}/metrics.csv",
        label="{prior}.{extractor}",
        title="stage 1: prior {prior}, {extractor} conditions",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    localrule: True
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre report loss --metrics {params.metrics:q} --model {input.model:q} --label {params.label:q} "
        "--title {params.title:q} --out {output:q} > {log:q} 2>&1"


use rule report_loss_stage1 as report_loss_stage2 with:
    input:
        model="results/models/stage2/{album}.{extractor}/model.pt",
    output:
        report(
            "results/report/loss/stage2/{album}.{extractor}.png",
            category="Training",
            subcategory="stage 2",
            caption="../report/loss.rst",
        ),
    log:
        "logs/report/loss/stage2/{album}.{extractor}.log",
    benchmark:
        "benchmarks/report_loss_stage2/{album}.{extractor}.tsv"
    # `use rule ... with:` does not inherit localrule (Snakemake 9.27): say it again
    localrule: True
    params:
        metrics="results/runs/stage2/{album}.{extractor}/metrics.csv",
        label="{album}.{extractor}",
        title="stage 2: album {album}, {extractor} conditions",


rule report_align:
    """Counts by status of one album's alignment (its align.parquet)."""
    input:
        "results/aligned/{album}",
    output:
        report(
            "results/report/align/{album}.tsv",
            category="Alignment",
            labels={"album": "{album}"},
            caption="../report/status.rst",
        ),
    log:
        "logs/report/align/{album}.log",
    benchmark:
        "benchmarks/report_align/{album}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    localrule: True
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre report status --table {input:q} --out {output:q} > {log:q} 2>&1"


use rule report_align as report_align_target with:
    input:
        "results/targets/{edit}",
    output:
        report(
            "results/report/align_target/{edit}.tsv",
            category="Alignment",
            labels={"album": "target of {edit}"},
            caption="../report/status.rst",
        ),
    log:
        "logs/report/align_target/{edit}.log",
    benchmark:
        "benchmarks/report_align_target/{edit}.tsv"
    # `use rule ... with:` does not inherit localrule (Snakemake 9.27): say it again
    localrule: True


use rule report_align as report_align_reference with:
    input:
        "results/references/{edit}/{ref}",
    output:
        report(
            "results/report/align_reference/{edit}.{ref}.tsv",
            category="Alignment",
            labels={"album": "reference photo {ref} of {edit}"},
            caption="../report/status.rst",
        ),
    log:
        "logs/report/align_reference/{edit}.{ref}.log",
    benchmark:
        "benchmarks/report_align_reference/{edit}.{ref}.tsv"
    # `use rule ... with:` does not inherit localrule (Snakemake 9.27): say it again
    localrule: True


use rule report_align as report_extract with:
    input:
        "results/codes/{album}.{extractor}.parquet",
    output:
        report(
            "results/report/extract/{album}.{extractor}.tsv",
            category="Extraction",
            labels={"album": "{album}", "extractor": "{extractor}"},
            caption="../report/status.rst",
        ),
    log:
        "logs/report/extract/{album}.{extractor}.log",
    benchmark:
        "benchmarks/report_extract/{album}.{extractor}.tsv"
    # `use rule ... with:` does not inherit localrule (Snakemake 9.27): say it again
    localrule: True


rule report_scores:
    """The scores of one edit's pictures: a table and a transfer-vs-identity scatter (flagged marked)."""
    input:
        "results/edits/{edit}",
    output:
        table=report(
            "results/report/scores/{edit}.tsv",
            category="Edits",
            subcategory="scores",
            labels={"edit": "{edit}", "figure": "table"},
            caption="../report/scores.rst",
        ),
        plot=report(
            "results/report/scores/{edit}.png",
            category="Edits",
            subcategory="scores",
            labels={"edit": "{edit}", "figure": "transfer vs identity"},
            caption="../report/scores.rst",
        ),
    log:
        "logs/report/scores/{edit}.log",
    benchmark:
        "benchmarks/report_scores/{edit}.tsv"
    params:
        title="scores of edit {edit}",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    localrule: True
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre report scores --edits {input:q} --table {output.table:q} --plot {output.plot:q} "
        "--title {params.title:q} > {log:q} 2>&1"
