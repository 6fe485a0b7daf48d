"""Measurement: datasets, scorers, eval runs, baseline comparison and gates."""
