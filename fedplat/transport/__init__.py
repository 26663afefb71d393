"""How client work travels between the round loop and the clients.

* `placement`: which simulated node serves which clients.
* `wire`: one message per node and exchange, carrying one or several clients' work.
* `exchange`: the server side (set-up, exchanges, checkpoint requests, reply checks).
* `node`: the node side (run each client of a message, faults, per-client failures).
* `faults`: seeded crashes, dropouts and stragglers for robustness studies.
* `observers`: what watches exchanges (accounting, privacy capture).
"""
