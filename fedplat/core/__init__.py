"""What every algorithm builds on.

The Strategy and Client base classes, the stage vocabulary, records,
seeding and state-dict arithmetic.
"""
