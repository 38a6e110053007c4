"""Where a recurrent layer's time goes, rnnkit against torch.nn, phase by phase (issue 32).

Runs forward+backward of both layers (same weights, input with or without gradient) under the
torch profiler and sums each operator's own CPU time into the phases of a recurrent layer:

    input projection   x W_ih^T + b (rnnkit's linear; inside torch's oneDNN op)
    recurrence fwd     the time loop (rnnkit's C++ loop; oneDNN's mkldnn_rnn_layer)
    recurrence bwd     the backward time loop (rnnkit's C++ backward; mkldnn_rnn_layer_backward)
    weight/input grads dW_ih, db, dx of the projection (rnnkit: matmuls; oneDNN: inside its backward)
    other              everything else the profiler saw (allocation, copies, autograd bookkeeping)

    python scripts/profile_lstm.py                          # LSTM, the cases of issues 30 and 32
    python scripts/profile_lstm.py --kind gru --cases "24 32 64 64 2"
Per phase: milliseconds per forward+backward (mean over the profiled repeats) and its share.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

import rnnkit.nn as rnn

PHASES = {
    "input projection": ("aten::linear", "aten::addmm", "aten::matmul"),
    "recurrence fwd": ("rnnkit_cpp::lstm_forward", "rnnkit_cpp::gru_forward", "aten::mkldnn_rnn_layer"),
    "recurrence bwd": (
        "rnnkit_cpp::lstm_backward",
        "rnnkit_cpp::gru_backward",
        "aten::mkldnn_rnn_layer_backward",
    ),
    "weight/input grads": ("aten::mm", "aten::sum", "aten::bmm"),
}
DEFAULT_CASES = ["24 32 64 64 2", "12 32 128 128 2", "50 32 128 256 2", "100 64 512 512 1"]


def phase_of(event) -> str:
    """The phase of an operator: that of the outermost enclosing operator named in PHASES (a time
    loop's own matrix products belong to the loop), the projection's products in backward being
    weight/input gradients; "other" when no enclosing operator is named."""
    chain = []
    while event is not None:
        chain.append(event.name)
        event = event.cpu_parent
    backward = any(name.startswith("autograd::engine") for name in chain)
    loops = PHASES["recurrence fwd"] + PHASES["recurrence bwd"]
    if "EagerLstmLayer" in chain and not backward and chain[0] == "aten::mm" and not set(chain) & set(loops):
        return "input projection"  # the product inside the eager LSTM node's forward, not in its loop
    for name in reversed(chain):  # outermost first
        for phase, names in PHASES.items():
            if name in names:
                return "weight/input grads" if phase == "input projection" and backward else phase
    return "other"


def profile_layer(layer: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Milliseconds per forward+backward spent in each phase (operators' own CPU time, so nothing is
    counted twice; what an operator allocates inside itself counts as "other")."""

    def step() -> None:
        x.grad = None
        out, _ = layer(x)
        out.sum().backward()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        totals[phase_of(event)] += event.self_cpu_time_total
    return {phase: us / 1e3 / repeats for phase, us in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help='"T B I H layers", quoted')
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--input-grad", choices=["yes", "no"], default="yes")
    args = parser.parse_args()
    ours_cls, torch_cls = {"lstm": (rnn.LSTM, torch.nn.LSTM), "gru": (rnn.GRU, torch.nn.GRU)}[args.kind]
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, input grad {args.input_grad}")
    header = "| case | layer | " + " | ".join(list(PHASES) + ["other", "total"]) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for case in args.cases:
        steps, batch, inputs, hidden, layers = (int(v) for v in case.split())
        theirs = torch_cls(inputs, hidden, num_layers=layers)
        ours = ours_cls(inputs, hidden, num_layers=layers)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(steps, batch, inputs).requires_grad_(args.input_grad == "yes")
        for name, layer in (("torch.nn", theirs), ("rnnkit", ours)):
            phases = profile_layer(layer, x, args.repeats)
            total = sum(phases.values())
            shares = [phases.get(p, 0.0) for p in [*PHASES, "other"]]
            cells = [f"{ms:.2f} ({ms / total:.0%})" for ms in shares]
            label = f"T{steps} B{batch} I{inputs} H{hidden} L{layers}"
            print(f"| {label} | {name} | " + " | ".join(cells) + f" | {total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
