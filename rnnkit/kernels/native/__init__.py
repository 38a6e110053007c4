"""The ``native`` backend: each built-in cell's recurrence as one ``torch.library`` custom op with a
hand-written backward. On the CPU its time loop runs in C++ (:mod:`.cpp_loop`, ``csrc/``), built at
first use, with the Python loops of :mod:`.lstm` / :mod:`.gru` as the fallback; elsewhere (CUDA) the
Python loops run on torch ops. :mod:`.common` holds the autograd wiring both cells share."""

from rnnkit.kernels.native.gru import gru_forward
from rnnkit.kernels.native.lstm import lstm_forward

__all__ = ["gru_forward", "lstm_forward"]
