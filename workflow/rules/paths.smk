rule path_plan:
    input:
        episode_indexes(),
    output:
        "results/paths/{source}/plan.json",
    log:
        "logs/paths/{source}/plan.log",
    conda:
        "../../envs/paths.yaml"
    params:
        shards=lambda w: n_shards(w.source),
    script:
        "../scripts/path_plan.py"


rule path_shard:
    input:
        plan="results/paths/{source}/plan.json",
        indexes=episode_indexes(),
    output:
        "results/paths/{source}/shards/shard{shard}.json",
    log:
        "logs/paths/{source}/shard{shard}.log",
    conda:
        "../../envs/paths.yaml"
    container:
        CONTAINERS["paths"]
    resources:
        gpu=lambda w: launched_gpus(w.source),
        mem_mb=2000,
        runtime=24 * 60,
    params:
        settings=lambda w: CFG.paths.sources[w.source],
        journal_dir=CFG.paths.journal_dir,
    script:
        "../scripts/path_shard.py"


rule path_episode:
    input:
        unpack(path_episode_inputs),
    output:
        "results/paths/{source}/{task}/{episode}.json",
    log:
        "logs/paths/{source}/{task}/{episode}.log",
    conda:
        "../../envs/paths.yaml"
    container:
        CONTAINERS["paths"]
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        settings=lambda w: CFG.paths.sources[w.source],
        journal_dir=CFG.paths.journal_dir,
        root=CFG.data.root,
    script:
        "../scripts/path_episode.py"


rule path_summary:
    input:
        paths=lambda w: path_files(w.source),
        oracle=lambda w: oracle_files_for(w.source),
    output:
        report(
            "results/paths/{source}/summary.csv",
            category="Paths",
            labels={"source": "{source}", "table": "success rate per task"},
        ),
    log:
        "logs/paths/{source}/summary.log",
    conda:
        "../../envs/paths.yaml"
    script:
        "../scripts/path_summary.py"
