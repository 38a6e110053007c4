"""The lecture notes' trend-accelerated update (seed 001, "learning technique (1)").

Seed 001 accelerates each weight's step by the trend of its two previous gradients:

    dw_{t=3} = dw_{t=3} * (dw_{t=2} / dw_{t=1})

"if there is a fixed trend found in the previous 2 steps, the next step will be accelerated". Per
weight, with g_n the gradient at step n, the update is

    r_n  = g_{n-1} / g_{n-2}                        the trend of the two previous gradients
    s_n  = clamp(r_n, 1 / max_scale, max_scale)     if r_n > 0, else 1
    d_n  = s_n * g_n                                 (steps 1 and 2: s = 1, there is no trend yet)
    w   <- w - lr * d_n                              (plain SGD), or through a momentum buffer:
    b   <- momentum * b + d_n ;  w <- w - lr * b

The guards, which the seed's rule lacks and a usable optimizer needs:

- **sign flip** (r_n <= 0: the gradient changed sign, the "trend" is an oscillation): no
  acceleration, s = 1. Multiplying by a negative ratio would step uphill.
- **division by (near) zero** (|g_{n-2}| <= eps): no trend is measurable, s = 1.
- **huge or tiny ratios**: s is clamped to [1/max_scale, max_scale], so one noisy pair of gradients
  cannot blow a weight away; a shrinking gradient (0 < r < 1) slows the step down, as the rule says.

Its classic relatives change each weight's step size by the agreement of consecutive gradient signs:
delta-bar-delta (Jacobs 1988) and Rprop (:class:`torch.optim.Rprop`). The state (the two previous
gradients, the momentum buffer) lives in ``optimizer.state`` and so in Lightning's checkpoints: a
resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


class TrendSGD(Optimizer):
    """SGD with seed 001's trend acceleration (see the module docstring for the rule and its guards).

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: 0 for plain SGD on the scaled gradient, else a heavy-ball buffer over it.
        max_scale: the largest acceleration (and 1/max_scale the strongest slow-down) of one step.
        eps: |g_{n-2}| at or below which the trend is not measured (s = 1).
        weight_decay: L2 penalty added to the gradient before everything else.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.01,
        momentum: float = 0.0,
        max_scale: float = 5.0,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if not max_scale >= 1:
            raise ValueError(f"max_scale must be at least 1, got {max_scale}")
        if not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"eps and weight_decay must not be negative, got {eps} and {weight_decay}")
        defaults = {"lr": lr, "momentum": momentum, "max_scale": max_scale, "eps": eps}
        super().__init__(params, {**defaults, "weight_decay": weight_decay})

    @staticmethod
    def trend_scale(g_prev: Tensor, g_prev2: Tensor, max_scale: float, eps: float) -> Tensor:
        """s = clamp(g_{n-1} / g_{n-2}, 1/max_scale, max_scale) where the ratio is positive and
        |g_{n-2}| > eps, else 1."""
        measurable = g_prev2.abs() > eps
        ratio = g_prev / torch.where(measurable, g_prev2, torch.ones_like(g_prev2))
        trend = measurable & (ratio > 0)
        return torch.where(trend, ratio.clamp(1.0 / max_scale, max_scale), torch.ones_like(ratio))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "prev_grad" in state and "prev2_grad" in state:
                    scale = self.trend_scale(
                        state["prev_grad"], state["prev2_grad"], group["max_scale"], group["eps"]
                    )
                    direction = grad * scale  # d_n = s_n g_n
                else:
                    direction = grad.clone()  # steps 1 and 2: no trend yet
                if "prev_grad" in state:
                    state["prev2_grad"] = state["prev_grad"]
                state["prev_grad"] = grad.clone()
                if group["momentum"]:
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = direction.clone()
                    else:
                        buffer.mul_(group["momentum"]).add_(direction)
                    direction = buffer
                p.add_(direction, alpha=-group["lr"])
        return loss
