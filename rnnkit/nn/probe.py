"""Measure dL/dh_t at every time step (:class:`StateGradientProbe`).

The probe taps the reference time loop, so it lives beside it in :mod:`rnnkit.kernels.reference.probe`;
this is its public name.
"""

from rnnkit.kernels.reference.probe import StateGradientProbe, active_probe

__all__ = ["StateGradientProbe", "active_probe"]
