"""The ``reference`` backend: the cell's own ``step`` run by one Python time loop, autograd through
every step. It runs every cell, and every fused backend is tested against it."""

from rnnkit.kernels.reference.double_backward import gru_vjp, lstm_bias_vjp, lstm_vjp
from rnnkit.kernels.reference.loop import run_cell, run_steps
from rnnkit.kernels.reference.probe import StateGradientProbe, active_probe

__all__ = [
    "StateGradientProbe",
    "active_probe",
    "gru_vjp",
    "lstm_bias_vjp",
    "lstm_vjp",
    "run_cell",
    "run_steps",
]
