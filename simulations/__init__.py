"""Experiment drivers, selected by `scenario=<name>`."""
