"""ATV-Pruning reproducibility library: all logic behind the Snakemake workflow."""

__version__ = "0.1.0"
