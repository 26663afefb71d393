"""Client halves of the algorithms: one module per algorithm, named by `strategy.client_target`."""
