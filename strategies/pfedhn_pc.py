"""pFedHN-PC (Shamsian et al., 2021): personalised classifiers on top of pFedHN.

The hypernetwork generates only the feature extractor; each client keeps a private linear
head (and its SGD momentum) for the whole run.

Server side this is pFedHN with the target's head left out of the generated tensors (and the
paper's larger server learning rate, 5e-2, in conf/strategy/pfedhn_pc.yaml).
"""

from __future__ import annotations

from strategies.pfedhn import PFedHN


class PFedHNPC(PFedHN):
    """Generates the target without its head; the head lives on the clients."""

    personal_head = True
