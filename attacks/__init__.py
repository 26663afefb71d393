"""Threat models of gradient-inversion attacks, one module per protocol (fedplat.privacy.threat).

A strategy names the one that models its clients' uploads in its `threat_model` class attribute
(`fedplat.core.strategy.Strategy.threat_model`), e.g. `strategies.fedavg.FedAvg` names
`attacks.fedavg.FedAvgThreat`; `fedplat-attack` uses it unless `--threat-model pkg.mod.Class`
picks another.
"""
