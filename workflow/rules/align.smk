# FFHQ alignment of photo albums and edit targets (align environment: landmark back-ends, no training stack).


rule align:
    """Detect landmarks and FFHQ-align every photo of an album (or only index the landmarks of an album the
    sheet marks as already aligned, e.g. FFHQ); per-file status in align.parquet."""
    input:
        images=album_images,
    output:
        directory("results/aligned/{album}"),
    log:
        "logs/align/{album}.log",
    benchmark:
        "benchmarks/align/{album}.tsv"
    params:
        folder=lambda wc: ALBUMS[wc.album]["path"],
        settings=album_align_flags,
        torch_home=f"{config['assets']}/torch",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/align.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre align --input {params.folder:q} --output {output:q} "
        "{params.settings} > {log:q} 2>&1"


use rule align as align_target with:
    input:
        target=target_input,
    output:
        directory("results/targets/{edit}"),
    log:
        "logs/align_target/{edit}.log",
    benchmark:
        "benchmarks/align_target/{edit}.tsv"
    params:
        folder=target_source,
        settings=target_align_flags,
        torch_home=f"{config['assets']}/torch",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,


use rule align as align_reference with:
    input:
        photo=reference_input,
    output:
        directory("results/references/{edit}/{ref}"),
    log:
        "logs/align_reference/{edit}.{ref}.log",
    benchmark:
        "benchmarks/align_reference/{edit}.{ref}.tsv"
    params:
        folder=reference_photo,
        settings=reference_align_flags,
        torch_home=f"{config['assets']}/torch",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
