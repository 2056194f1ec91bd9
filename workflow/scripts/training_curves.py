"""Training and validation loss of one experiment, as a PNG for the report."""

from overlayflow.logs import script_log
from overlayflow.report import plot_training

with script_log(snakemake.log[0]):
    plot_training(snakemake.input[0], snakemake.output[0], snakemake.wildcards.experiment)
