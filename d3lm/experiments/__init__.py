"""Experiments: grids of runs (ablation tables, the understanding table) over the stages."""
