"""Train one task with several optimizers over several seeds; print the median test metric and spread.

    python scripts/optimizer_table.py                                   # airline, 4 optimizers, 5 seeds
    python scripts/optimizer_table.py --optimizers sgd trend --seeds 0 1 2 model.optimizer.lr=0.3

Every run is ``python train.py optimizer=<name> seed=<s> <overrides>`` with the same budget (the
task's epochs); learning rates are each optimizer group's defaults (``configs/optimizer/``) unless an
override sets ``model.optimizer.lr``. The table gives the median over seeds with [min, max].
"""

from __future__ import annotations

import argparse

from variants_table import run_variants


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "trend", "rprop", "adam"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--metric", default="mae", help="the test metric to report (test/<metric>)")
    parser.add_argument("--out", default="logs/optimizers")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. task=classify")
    args = parser.parse_args()
    variants = {name: [f"optimizer={name}"] for name in args.optimizers}
    print("\n".join(run_variants(variants, args.seeds, [args.metric], args.out, args.overrides)))


if __name__ == "__main__":
    main()
