"""The run directory.

The recorder (metrics.jsonl, summary.json), plots, checkpoints, and the report
that compares runs.
"""
