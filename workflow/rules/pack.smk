# Versioned LMDB of images, codes and rendered buffers (main environment).


rule pack:
    """Render the physical buffers from the codes and pack everything into a versioned LMDB + manifest."""
    input:
        assets=demo_assets_input,
        aligned="results/aligned/{album}",
        codes="results/codes/{album}.{extractor}.parquet",
    output:
        lmdb=directory("results/lmdb/{album}.{extractor}.lmdb"),
        manifest="results/lmdb/{album}.{extractor}.parquet",
    log:
        "logs/pack/{album}.{extractor}.log",
    benchmark:
        "benchmarks/pack/{album}.{extractor}.tsv"
    params:
        assets=config["assets"],
        settings=pack_flags,
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre pack --images {input.aligned:q} --codes {input.codes:q} --assets {params.assets:q} "
        "--out {output.lmdb:q} --manifest {output.manifest:q} {params.settings} > {log:q} 2>&1"
