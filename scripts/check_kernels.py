"""Correctness sweep of the fused backends against torch.nn, for any device (point it at a GPU).

    python scripts/check_kernels.py                                  # native backend on the CPU
    python scripts/check_kernels.py --device cuda --backends triton cpu \
        --dtypes float64 float32 bfloat16 float16
    TRITON_INTERPRET=1 python scripts/check_kernels.py --backends triton --quick

Prints, per (kind, backend, dtype, shape), the worst error over outputs, final states and all
gradients (max |diff| for float64, relative norm otherwise) and exits non-zero if one is over its bound.
Rows marked "+masks" run in training mode with zoneout and recurrent dropout, which torch.nn lacks:
they compare with rnnkit's reference loop at the same dtype and seed (the same masks).
"""

from __future__ import annotations

import argparse
import sys

import torch
from kernel_parity import BOUNDS, compare_with_reference, compare_with_torch

from rnnkit.kernels import BACKENDS

SHAPES = [  # steps, batch, input, hidden
    (1, 1, 1, 1),
    (1, 3, 4, 5),
    (7, 1, 3, 6),
    (6, 5, 2, 7),
    (4, 3, 9, 17),
    (12, 2, 3, 33),
    (64, 16, 32, 100),
    (100, 64, 512, 512),
    (1024, 4, 128, 128),
    (1024, 16, 768, 768),
]
QUICK = [*SHAPES[:5], (100, 64, 512, 512)]  # the small ones and the benchmark's standard case
DEEP_BI = {"num_layers": 2, "bidirectional": True}
DEEP_SHAPES = [(6, 4, 3, 5), (50, 32, 128, 256)]  # 2-layer bidirectional
MASKS = {"zoneout": 0.3, "recurrent_dropout": 0.2}  # training mode, against the reference loop
MASKED_SHAPES = [(7, 1, 3, 6), (6, 5, 2, 7), (12, 2, 3, 33), (64, 16, 32, 100)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backends", nargs="+", default=["native"], choices=[b for b in BACKENDS if b != "auto"]
    )
    parser.add_argument("--kinds", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float64", "float32"],
        choices=["float64", "float32", "bfloat16", "float16"],
    )
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument(
        "--configs",
        default="all",
        choices=["all", "plain", "masked"],
        help="plain: against torch.nn only; masked: the zoneout + recurrent dropout rows only",
    )
    args = parser.parse_args()
    failures = 0
    print("| kind | backend | dtype | T B I H | layers | lengths | worst tensor | error | bound | ok |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    configs = [(shape, {}) for shape in (QUICK if args.quick else SHAPES)]
    configs += [(shape, DEEP_BI) for shape in DEEP_SHAPES[: 1 if args.quick else None]]
    configs += [(shape, MASKS) for shape in MASKED_SHAPES[: 2 if args.quick else None]]
    configs += [(DEEP_SHAPES[0], {**DEEP_BI, **MASKS})]
    if args.configs != "all":
        configs = [(shape, kw) for shape, kw in configs if ("zoneout" in kw) == (args.configs == "masked")]
    for kind in args.kinds:
        for backend in args.backends:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                for shape, layer_kwargs in configs:
                    for packed in (False, True):
                        steps, batch = shape[:2]
                        lengths = torch.randint(1, steps + 1, (batch,)) if packed else None
                        bound = BOUNDS[dtype]
                        try:
                            masked = "zoneout" in layer_kwargs
                            compare = compare_with_reference if masked else compare_with_torch
                            result = compare(
                                kind,
                                backend,
                                *shape,
                                dtype=dtype,
                                device=args.device,
                                lengths=lengths,
                                **layer_kwargs,
                            )
                            name, err = result.worst(relative=dtype != torch.float64)
                            ok, shown = err <= bound, f"{err:.2e}"
                        except Exception as exc:  # noqa: BLE001 - a crash is a failed row, not the end
                            name, ok, shown = (
                                f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}",
                                False,
                                "-",
                            )
                        failures += not ok
                        layers = "2 bi" if layer_kwargs.get("bidirectional") else "1"
                        layers += " +masks" if "zoneout" in layer_kwargs else ""
                        print(
                            f"| {kind} | {backend} | {dtype_name} | {' '.join(map(str, shape))} | {layers} | "
                            f"{'var' if packed else 'full'} | {name} | {shown} | {bound:.0e} | "
                            f"{'yes' if ok else 'NO'} |",
                            flush=True,
                        )
    print(f"{failures} configuration(s) over their bound")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
