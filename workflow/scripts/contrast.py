"""One contrast (memory or path) over the experiments that differ in that factor only."""

from overlayflow.logs import script_log
from overlayflow.report import write_contrast

with script_log(snakemake.log[0]):
    write_contrast(
        dict(snakemake.input.items()),
        snakemake.params.experiments,
        snakemake.params.kind,
        snakemake.output[0],
    )
