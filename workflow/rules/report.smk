rule training_curves:
    input:
        "results/train/{experiment}/metrics.csv",
    output:
        report(
            "results/report/training/{experiment}.png",
            category="Training",
            labels={"experiment": "{experiment}"},
        ),
    log:
        "logs/report/training/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/training_curves.py"


rule evaluation_table:
    input:
        unpack(lambda w: evaluation_files(EXPERIMENTS)),
    output:
        csv=report(
            "results/report/evaluation.csv",
            category="Evaluation",
            labels={"table": "per experiment"},
        ),
        html=report(
            "results/report/evaluation.html",
            category="Evaluation",
            labels={"table": "experiments and contrasts"},
        ),
    log:
        "logs/report/evaluation.log",
    conda:
        "../../envs/data.yaml"
    params:
        experiments=experiment_records(),
    script:
        "../scripts/evaluation_table.py"


rule compare_memory:
    input:
        unpack(lambda w: evaluation_files(contrast_members("memory"))),
    output:
        report(
            "results/report/compare_memory.csv",
            category="Evaluation",
            labels={"table": "memory contrast"},
        ),
    log:
        "logs/report/compare_memory.log",
    conda:
        "../../envs/data.yaml"
    params:
        experiments=experiment_records(contrast_members("memory")),
        kind="memory",
    script:
        "../scripts/contrast.py"


rule compare_path:
    input:
        unpack(lambda w: evaluation_files(contrast_members("path"))),
    output:
        report(
            "results/report/compare_path.csv",
            category="Evaluation",
            labels={"table": "path contrast"},
        ),
    log:
        "logs/report/compare_path.log",
    conda:
        "../../envs/data.yaml"
    params:
        experiments=experiment_records(contrast_members("path")),
        kind="path",
    script:
        "../scripts/contrast.py"


rule path_quality:
    input:
        paths=lambda w: path_files(w.source),
        oracle=lambda w: oracle_files_for(w.source),
        indexes=episode_indexes(),
    output:
        frames="results/quality/{source}/frames.csv",
        by_task=report(
            "results/quality/{source}/by_task.csv",
            category="Path quality",
            subcategory="{source}",
            labels={"source": "{source}", "table": "per task"},
        ),
        by_phase=report(
            "results/quality/{source}/by_phase.csv",
            category="Path quality",
            subcategory="{source}",
            labels={"source": "{source}", "table": "early / middle / late"},
        ),
        by_visibility=report(
            "results/quality/{source}/by_visibility.csv",
            category="Path quality",
            subcategory="{source}",
            labels={"source": "{source}", "table": "visible / occluded"},
        ),
        plot=report(
            "results/quality/{source}/quality.png",
            category="Path quality",
            subcategory="{source}",
            labels={"source": "{source}", "table": "plots"},
        ),
    log:
        "logs/quality/{source}.log",
    conda:
        "../../envs/data.yaml"
    params:
        occluded_below=CFG.evaluate["occluded_below"],
    script:
        "../scripts/path_quality.py"
