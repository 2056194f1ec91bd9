from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if CFG.synthetic.enabled:

    include: "workflow/rules/synthetic.smk"


include: "workflow/rules/episodes.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        episode_indexes(),
        [path_files(source) for source in CFG.paths.sources],
        path_summaries(),
        dataset_stores(),
        preview_files(),
        evaluations(),
        report_files(),
