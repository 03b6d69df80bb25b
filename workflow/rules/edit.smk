# Edits: transfer expression / pose / lighting / latent from a target onto a personal album (main environment).


rule edit:
    """DDIM edits of every source photo of the album, one image per source x mode, plus a grid and a table."""
    input:
        unpack(edit_inputs),
        assets=demo_assets_input,
    output:
        report(
            directory("results/edits/{edit}"),
            patterns=["{name,grid}.png"],
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
        emoca_model=config.get("emoca_model", "EMOCA_v2_lr_mse_20"),
        modes=lambda wc: edit_row(wc)["modes"],
        source_extractor=lambda wc: edit_row(wc)["source_extractor"],
        target_extractor=lambda wc: edit_row(wc)["target_extractor"],
        seed=lambda wc: edit_row(wc)["seed"],
        init=lambda wc: edit_row(wc)["init"],
        mean_shape=edit_mean_shape_flag,
        steps=config["edit"]["steps"],
        eta=config["edit"].get("eta", 0.0),
        batch_size=config["edit"].get("batch_size", 16),
        save_buffers="--save-buffers" if config["edit"].get("save_buffers", True) else "",
        retry_failed=config["edit"].get("retry_failed", 0),
        score_flags=score_flags,
        torch_home=f"{config['assets']}/torch",
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        "../../envs/main.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre edit --model {input.model:q} --assets {params.assets:q} --emoca-model {params.emoca_model} "
        "--source {input.aligned:q} --source-codes {input.codes:q} --target {input.target:q} "
        "--modes {params.modes} --source-extractor {params.source_extractor} "
        "--target-extractor {params.target_extractor} {params.mean_shape} --steps {params.steps} "
        "--eta {params.eta} --init {params.init} --seed {params.seed} --batch-size {params.batch_size} "
        "{params.save_buffers} {params.score_flags} --retry-failed {params.retry_failed} --out {output:q} "
        "> {log:q} 2>&1"


rule score:
    """Score an existing edit folder again (other thresholds or detector) without re-sampling: `dre score`."""
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
        emoca_model=config.get("emoca_model", "EMOCA_v2_lr_mse_20"),
        score_flags=score_flags,
        batch_size=config["edit"].get("batch_size", 16),
        torch_home=f"{config['assets']}/torch",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/main.yaml"
    shell:
        "TORCH_HOME={params.torch_home:q} python -m dre score --edits {input.edits:q} --assets {params.assets:q} "
        "--emoca-model {params.emoca_model} {params.score_flags} --batch-size {params.batch_size} "
        "--out {output:q} > {log:q} 2>&1"
