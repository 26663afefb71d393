"""The configuration.

Composing Hydra configs, the typed core settings, value checks, and the
validation of a whole config.
"""
