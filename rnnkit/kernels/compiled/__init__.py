"""The ``compiled`` backend: any cell's reference time loop compiled by ``torch.compile`` in chunks
of a few steps (:mod:`.cell`)."""

from rnnkit.kernels.compiled.cell import run_compiled

__all__ = ["run_compiled"]
