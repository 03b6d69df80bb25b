# FFHQ alignment of raw photo albums (align environment: landmark back-ends, no torch training stack).


rule align:
    """Detect landmarks and FFHQ-align every photo of a raw album; per-file status in align.parquet."""
    input:
        images=album_images,
    output:
        directory("results/aligned/{album}"),
    log:
        "logs/align/{album}.log",
    benchmark:
        "benchmarks/align/{album}.tsv"
    wildcard_constraints:
        album=_alternatives(RAW_ALBUMS),
    params:
        folder=lambda wc: ALBUMS[wc.album]["path"],
        backend=album_backend,
        size=config["align"]["size"],
        multi_face=config["align"]["multi_face"],
        min_face=config["align"]["min_face"],
        torch_home=f"{config['assets']}/torch",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/align.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre align --input {params.folder:q} --output {output:q} "
        "--size {params.size} --backend {params.backend} --multi-face {params.multi_face} "
        "--min-face {params.min_face} > {log:q} 2>&1"


rule index_aligned:
    """Albums that are already FFHQ-aligned (FFHQ): detect and index landmarks only, no warping."""
    input:
        images=album_images,
    output:
        directory("results/aligned/{album}"),
    log:
        "logs/align/{album}.log",
    benchmark:
        "benchmarks/align/{album}.tsv"
    wildcard_constraints:
        album=_alternatives(PREALIGNED_ALBUMS),
    params:
        folder=lambda wc: ALBUMS[wc.album]["path"],
        backend=album_backend,
        size=config["align"]["size"],
        torch_home=f"{config['assets']}/torch",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/align.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre align --already-aligned --input {params.folder:q} "
        "--output {output:q} --size {params.size} --backend {params.backend} > {log:q} 2>&1"


rule align_target:
    """Align an edit's target photo with the same recipe (or index it when the sheet says it is aligned)."""
    input:
        target=lambda wc: EDITS[wc.edit]["target"],
    output:
        directory("results/targets/{edit}"),
    log:
        "logs/align_target/{edit}.log",
    benchmark:
        "benchmarks/align_target/{edit}.tsv"
    params:
        aligned=lambda wc: "--already-aligned" if EDITS[wc.edit]["target_aligned"] else "",
        backend=lambda wc: ALBUMS[EDITS[wc.edit]["album"]].get("backend") or config["align"]["backend"],
        size=config["align"]["size"],
        torch_home=f"{config['assets']}/torch",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/align.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre align {params.aligned} --input {input.target:q} "
        "--output {output:q} --size {params.size} --backend {params.backend} --multi-face largest "
        "> {log:q} 2>&1"
