"""The offline-evaluation table of every experiment, with the memory and path contrasts."""

from overlayflow.logs import script_log
from overlayflow.report import write_tables

with script_log(snakemake.log[0]):
    write_tables(
        dict(snakemake.input.items()),
        snakemake.params.experiments,
        snakemake.output.csv,
        snakemake.output.html,
    )
