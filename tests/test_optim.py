"""The trend-accelerated update of seed 001, worked by hand on a tiny problem, and its guards."""

from __future__ import annotations

import copy

import pytest
import torch
from training_helpers import compose_config, run_train

from rnnkit.optim import TrendSGD

D = torch.float64


def quadratic_gradients(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """L(w) = sum(a * w^2) / 2, so dL/dw = a * w."""
    return a * w


def hand_worked(w0, a, lr, steps, max_scale=5.0, momentum=0.0):
    """Seed 001's rule, dw_3 = dw_3 * (dw_2 / dw_1), with the documented guards, written out."""
    w, grads, buffer = w0.clone(), [], None
    for n in range(steps):
        g = quadratic_gradients(w, a)
        d = g.clone()
        if n >= 2:
            ratio = grads[-1] / grads[-2]
            scale = torch.where(ratio > 0, ratio.clamp(1 / max_scale, max_scale), torch.ones_like(ratio))
            d = g * scale
        grads.append(g)
        buffer = d if buffer is None else momentum * buffer + d
        w = w - lr * (buffer if momentum else d)
    return w


def run_optimizer(w0, a, steps, **kwargs):
    w = torch.nn.Parameter(w0.clone())
    optimizer = TrendSGD([w], **kwargs)
    for _ in range(steps):
        optimizer.zero_grad()
        (a * w * w).sum().div(2).backward()
        optimizer.step()
    return w.detach(), optimizer


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_steps_equal_the_hand_worked_rule(momentum):
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    a = torch.tensor([0.3, 1.5, 2.2], dtype=D)  # lr * a: 0.12 (steady trend), 0.6, 0.88
    for steps in (1, 2, 3, 6):
        got, _ = run_optimizer(w0, a, steps, lr=0.4, momentum=momentum)
        torch.testing.assert_close(got, hand_worked(w0, a, 0.4, steps, momentum=momentum), atol=1e-14, rtol=0)


def test_the_third_step_by_hand():
    """One weight, L = w^2 / 2, lr = 0.5: g0 = 4, w1 = 2, g1 = 2, w2 = 1, g2 = 1; trend 2 / 4 = 0.5,
    so the third step is 0.5 * 0.5 * 1 = 0.25 (a plain SGD step would be 0.5): w3 = 0.75."""
    got, _ = run_optimizer(torch.tensor([4.0], dtype=D), torch.tensor([1.0], dtype=D), 3, lr=0.5)
    assert got.item() == pytest.approx(0.75, abs=1e-15)


def test_guards_sign_flip_zero_and_huge_ratios():
    scale = TrendSGD.trend_scale(
        torch.tensor([-2.0, 1.0, 1000.0, 1e-6, 3.0]),  # g_{n-1}
        torch.tensor([1.0, 0.0, 1.0, 1.0, 2.0]),  # g_{n-2}
        max_scale=5.0,
        eps=1e-12,
    )
    # sign flip -> 1; division by zero -> 1; huge -> 5; tiny -> 1/5; steady growth -> 1.5
    torch.testing.assert_close(scale, torch.tensor([1.0, 1.0, 5.0, 0.2, 1.5]))
    assert torch.isfinite(scale).all()


def test_state_is_checkpointed_so_a_resumed_run_is_exact():
    w0, a = torch.tensor([1.0, -2.0, 0.5], dtype=D), torch.tensor([0.3, 1.5, 2.2], dtype=D)
    straight, _ = run_optimizer(w0, a, 8, lr=0.3, momentum=0.5)
    first, optimizer = run_optimizer(w0, a, 4, lr=0.3, momentum=0.5)
    saved = copy.deepcopy(optimizer.state_dict())
    w = torch.nn.Parameter(first.clone())
    resumed = TrendSGD([w], lr=0.3, momentum=0.5)
    resumed.load_state_dict(saved)
    for _ in range(4):
        resumed.zero_grad()
        (a * w * w).sum().div(2).backward()
        resumed.step()
    assert torch.equal(w.detach(), straight)


def test_bad_arguments_name_the_argument():
    w = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="momentum must lie in"):
        TrendSGD(w, momentum=1.0)
    with pytest.raises(ValueError, match="max_scale must be at least 1, got 0.5"):
        TrendSGD(w, max_scale=0.5)


def test_optimizer_group_composes(tmp_path):
    cfg = compose_config(["optimizer=trend"], tmp_path)
    assert cfg.model.optimizer._target_ == "rnnkit.optim.TrendSGD"
    assert compose_config([], tmp_path).model.optimizer._target_ == "torch.optim.Adam"
    assert compose_config(["data=adding"], tmp_path).model.optimizer.lr == 0.002  # data may tune lr


@pytest.mark.slow
def test_trend_optimizer_trains_from_the_command_line(tmp_path):
    # the one-step evaluation (3 epochs of SGD are far from a 24-month forecast)
    one_step = ["data.evaluation=rolling", "data.horizon=1", "data.window=36", "model.distribution=null"]
    metrics = run_train(["optimizer=trend", "trainer.max_epochs=3", *one_step], tmp_path)
    assert metrics["test/mae"] < metrics["baseline/mae"] * 2
