"""Host-side training pipeline: data synthesis, feature caching, the network, training.

Features and targets come from :mod:`edge.dsp` (batch form) and nothing here
re-implements them.
"""
