"""Launchers: Flower's Simulation Engine on Ray, or the inline backend."""

from fedplat.runtime.simulation import launch

__all__ = ["launch"]
