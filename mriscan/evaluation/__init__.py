"""Measuring models: metrics, evaluate, compare, promote, paired tests, plots."""
