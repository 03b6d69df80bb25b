# The built-in demo's synthetic assets (config `demo:`); its photos are made at parse time (common.smk).


rule demo_assets:
    """Synthetic FLAME/DECA/EMOCA assets in the official formats (`dre assets synth`; marker SYNTHETIC)."""
    output:
        directory(config["assets"]),
    log:
        "logs/demo_assets.log",
    benchmark:
        "benchmarks/demo_assets.tsv"
    params:
        seed=config.get("demo", {}).get("seed", 0),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/main.yaml"
    shell:
        "python -m dre assets synth --out {output:q} --seed {params.seed} > {log:q} 2>&1"
