# DECA / EMOCA FLAME codes per aligned image (main environment).


rule extract:
    """FLAME codes (shape, tex, exp, pose, cam, light) + DECA crop transform for every aligned image."""
    input:
        assets=demo_assets_input,
        aligned="results/aligned/{album}",
    output:
        "results/codes/{album}.{extractor}.parquet",
    log:
        "logs/extract/{album}.{extractor}.log",
    benchmark:
        "benchmarks/extract/{album}.{extractor}.tsv"
    params:
        assets=config["assets"],
        settings=stage_flags(config["extract"], emoca_model=config["emoca_model"]),
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre extract --images {input.aligned:q} --extractor {wildcards.extractor} "
        "--assets {params.assets:q} {params.settings} --out {output:q} > {log:q} 2>&1"
