"""Threat models of gradient-inversion attacks, one per strategy (see fedplat.privacy.threat).

`THREAT_MODELS` maps a strategy's `name` (its conf/strategy/<name>.yaml) to the class that
models what its clients upload; `fedplat-attack --threat-model` takes a name from this table
or an import path (`package.module.Class`) for strategies not listed.
"""

THREAT_MODELS: dict[str, str] = {
    "fedavg": "attacks.fedavg.FedAvgThreat",
    "dp_fedavg": "attacks.fedavg.FedAvgThreat",  # the attacker ignores clipping and noise
    "pfedhn": "attacks.pfedhn.PFedHNThreat",
    "pfedhn_pc": "attacks.pfedhn.PFedHNThreat",
    "hyperfl": "attacks.hyperfl.HyperFLThreat",
}
