"""What the Triton backend decides on the host without importing Triton: whether its kernels could
run (answered here where the answer does not need Triton) and block sizes. Importing the triton
package takes ~0.25 s, which ``import rnnkit.nn`` and every CPU run do not pay (issue 30);
:mod:`.common` imports Triton and answers the rest."""

from __future__ import annotations

import importlib.util
import os

import torch

NOT_ON_THIS_DEVICE = (
    "Triton kernels run on CUDA tensors (or on the CPU under TRITON_INTERPRET=1), got a {device} tensor"
)


def interpreting() -> bool:
    """Triton kernels run on the CPU through the interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_installed() -> bool:
    """The optional triton package is installed (looked up, not imported)."""
    return importlib.util.find_spec("triton") is not None


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def why_triton_cannot_run(device: torch.device) -> str | None:
    """None when Triton kernels can run on ``device`` here, else the reason. On the CPU without the
    interpreter the reason needs no import; otherwise :func:`.common.why_triton_cannot_run` answers."""
    if device.type == "cpu" and not interpreting() and triton_installed():
        return NOT_ON_THIS_DEVICE.format(device=device.type)
    from rnnkit.kernels.triton.common import why_triton_cannot_run as answer

    return answer(device)
