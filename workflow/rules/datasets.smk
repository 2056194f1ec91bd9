rule render_frames:
    input:
        index="results/episodes/{task}/{episode}.json",
    output:
        directory("results/frames/{task}/{episode}.zarr"),
    log:
        "logs/frames/{task}/{episode}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        size=CFG.overlay.size,
    script:
        "../scripts/render_frames.py"


rule render_paths:
    input:
        index="results/episodes/{task}/{episode}.json",
        paths="results/paths/{source}/{task}/{episode}.json",
    output:
        directory("results/overlays/{source}/{task}/{episode}.zarr"),
    log:
        "logs/overlays/{source}/{task}/{episode}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        size=CFG.overlay.size,
        style=CFG.overlay,
    script:
        "../scripts/render_paths.py"


rule preview:
    input:
        "results/overlays/{source}/{task}/{episode}.zarr",
    output:
        animation=report(
            "results/previews/{source}/{task}/{episode}.gif",
            category="Previews",
            subcategory="{source}",
            labels={"task": "{task}", "episode": "{episode}", "kind": "animation"},
        ),
        sheet=report(
            "results/previews/{source}/{task}/{episode}.png",
            category="Previews",
            subcategory="{source}",
            labels={"task": "{task}", "episode": "{episode}", "kind": "contact sheet"},
        ),
    log:
        "logs/previews/{source}/{task}/{episode}.log",
    conda:
        "../../envs/data.yaml"
    params:
        settings=CFG.previews,
    script:
        "../scripts/preview.py"


rule dataset:
    input:
        unpack(dataset_inputs),
    output:
        directory("results/datasets/{dataset}.zarr"),
    log:
        "logs/datasets/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        spec=lambda w: DATASETS[w.dataset],
        shard_frames=CFG.datasets.shard_frames,
        provenance=lambda w: dataset_provenance(w.dataset),
    script:
        "../scripts/dataset.py"
