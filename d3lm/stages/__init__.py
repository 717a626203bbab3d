"""Stages: one function per step of a run (train, sample, score, fine-tune, predict, rows).

Stages know run folders (``d3lm.rundir``) and configs, never grids: experiments
(``d3lm.experiments``), sweeps and the command line call them, never the reverse.
"""
