"""Weights of other projects in and out (:mod:`d3lm.interop.nt_v2`: HuggingFace NT v2 folders).

A layer above the network: it reads ``base.yaml`` for an imported model's training defaults and
writes run folders, which the network itself (:mod:`d3lm.model`) never does.
"""
