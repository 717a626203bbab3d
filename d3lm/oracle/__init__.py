"""The oracle CNN's training (:mod:`~d3lm.oracle.train`) and the data it is trained on
(:mod:`~d3lm.oracle.datasets`: a recipe's prepared table, downloaded on first use).

A layer above :mod:`d3lm.metrics`, whose ``oracle`` feature extractor only loads weights and
embeds: a metric never downloads data or trains a network, and the commands that score with an
oracle (``d3lm evaluate``, runs, grids) get theirs from here.
"""
