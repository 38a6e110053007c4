"""Shared helpers: copy weights into torch.nn twins, compare outputs and every gradient."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

# Without a GPU the Triton kernels run through Triton's CPU interpreter; it must be chosen before
# any kernel module is imported. With a GPU the same tests run the compiled kernels on CUDA.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The kernel tools (scripts/kernel_parity.py, scripts/triton_aot.py) are not part of the package:
# pytest finds them through pyproject's `pythonpath`; the Python subprocesses of tests through this.
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


def leaves(x):
    """Flatten outputs (tensors, tuples, PackedSequence) to a list of tensors."""
    if isinstance(x, PackedSequence):
        return [x.data]
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for item in x for t in leaves(item)]


def assert_close(a, b, tol, what=""):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max abs error {err:.3e} > {tol:.1e}"


def compare_modules(ours, theirs, make_inputs, tol=1e-10):
    """Run ``ours`` and ``theirs`` (same weights) on identical fresh inputs; compare outputs and the
    gradients of every input tensor and every parameter under a random linear loss."""
    theirs.load_state_dict(ours.state_dict())
    args_a = make_inputs()
    args_b = [clone_arg(a) for a in args_a]
    out_a = ours(*args_a)
    out_b = theirs(*args_b)
    la, lb = leaves(out_a), leaves(out_b)
    assert len(la) == len(lb)
    loss_a = loss_b = 0
    for k, (a, b) in enumerate(zip(la, lb, strict=True)):
        assert_close(a, b, tol, f"output {k}")
        w = torch.randn_like(b)
        loss_a = loss_a + (a * w).sum()
        loss_b = loss_b + (b * w).sum()
    loss_a.backward()
    loss_b.backward()
    for k, (a, b) in enumerate(zip(leaves(args_a), leaves(args_b), strict=True)):
        if b.requires_grad:
            assert_close(a.grad, b.grad, tol, f"grad of input {k}")
    pa, pb = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pb:
        assert pa[name].grad is not None, f"no gradient reached {name}"
        assert_close(pa[name].grad, pb[name].grad, tol, f"grad of {name}")
    return out_a, out_b


def clone_arg(x):
    if isinstance(x, PackedSequence):
        data = x.data.detach().clone().requires_grad_(x.data.requires_grad)
        return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(x.requires_grad)
    if isinstance(x, tuple):
        return tuple(clone_arg(t) for t in x)
    return x
