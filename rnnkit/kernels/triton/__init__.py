"""The ``triton`` backend: fused Triton kernels, one file per cell (:mod:`.lstm`, :mod:`.gru`: the
kernels and a :class:`~.driver.TritonCell` describing them), one driver for forward and backward
over every path (:mod:`.driver`), the plan table (:mod:`.paths`), the CUDA-graph recording of the
per-step loops (:mod:`.graphs`) and the device helpers every kernel shares (:mod:`.common`).

The ``triton`` package is optional: without it the modules import, define no kernels, and
:func:`~.common.why_triton_cannot_run` says why."""
