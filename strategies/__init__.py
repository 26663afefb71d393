"""Server halves of the algorithms: one module per algorithm, named by `strategy._target_`."""
