"""Local training loops.

One client at a time, or several clients of one architecture in one vmapped pass.
"""
