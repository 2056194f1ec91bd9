rule train:
    input:
        store=experiment_store,
    output:
        model="results/train/{experiment}/model.pt",
        metrics="results/train/{experiment}/metrics.csv",
    log:
        "logs/train/{experiment}.log",
    conda:
        "../../envs/train.yaml"
    container:
        CONTAINERS["train"]
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        settings=lambda w: EXPERIMENTS[w.experiment].train,
        provenance=lambda w: {
            "experiment": w.experiment,
            "dataset": EXPERIMENTS[w.experiment].dataset,
        },
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        model="results/train/{experiment}/model.pt",
        store=experiment_store,
    output:
        summary="results/eval/{experiment}.json",
        windows="results/eval/{experiment}.csv",
    log:
        "logs/eval/{experiment}.log",
    conda:
        "../../envs/train.yaml"
    container:
        CONTAINERS["train"]
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=CFG.evaluate,
    script:
        "../scripts/evaluate.py"
