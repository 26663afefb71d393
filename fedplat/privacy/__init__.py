"""Privacy audits: gradient-inversion attacks against the messages a run really exchanged.

`capture` saves the messages; `threat` turns them into an attack problem (with the threat
model the run's strategy declares, `Strategy.threat_model`); `inversion` reconstructs the
private batch; `metrics` scores it against the true batch (`truth`); `cli` is
`fedplat-attack`.
"""
