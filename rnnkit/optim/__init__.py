"""Optimizers the lecture notes teach that torch.optim lacks."""

from rnnkit.optim.trend import TrendSGD

__all__ = ["TrendSGD"]
