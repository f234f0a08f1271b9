"""ActiveSeg numerical core: I/O, labels, model, training, inference, active learning.

Nothing here imports the web layer; every function works from a notebook or the CLI.
"""
