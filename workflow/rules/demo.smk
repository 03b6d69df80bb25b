# The built-in demo (config `demo:`): its photos and its synthetic assets are the outputs of two rules, so a
# dry run writes nothing and the first real run makes them.


checkpoint demo_album:
    """The demo's photos (`dre demo-album`): the personal album, the prior album, the edit's target and a short
    driving sequence (frames of the target, slightly turned, shifted and relit), made
    from public-domain portraits that scikit-image and matplotlib install. A checkpoint: the align rule's
    inputs are the photo files (as for any album), which are known only once this has run."""
    output:
        personal=directory(str(DEMO_PHOTOS["personal"])),
        prior=directory(str(DEMO_PHOTOS["prior"])),
        target=str(DEMO_PHOTOS["target"]),
        frames=directory(str(DEMO_PHOTOS["frames"])),
    log:
        "logs/demo_album.log",
    benchmark:
        "benchmarks/demo_album.tsv"
    params:
        n=config["demo"]["n"],
        n_prior=config["demo"]["n_prior"],
        seed=config["demo"]["seed"],
        n_frames=config["demo"]["n_frames"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/main.yaml"
    shell:
        "(python -m dre demo-album --out {output.personal:q} --kind personal --n {params.n} --seed {params.seed} "
        "--target {output.target:q} --frames {output.frames:q} --n-frames {params.n_frames} && python -m dre demo-album --out {output.prior:q} --kind prior "
        "--n {params.n_prior} --seed {params.seed}) > {log:q} 2>&1"


rule demo_assets:
    """Synthetic FLAME/DECA/EMOCA assets in the official formats (`dre assets synth`; marker SYNTHETIC)."""
    output:
        directory(config["assets"]),
    log:
        "logs/demo_assets.log",
    benchmark:
        "benchmarks/demo_assets.tsv"
    params:
        seed=config["demo"]["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre assets synth --out {output:q} --seed {params.seed} > {log:q} 2>&1"
