"""Train the Elman RNN and the LSTM on the adding problem with the gradient-flow callback; draw both.

    python scripts/vanishing_figure.py                       # -> docs/vanishing.png (about 2 min on 2 cores)
    python scripts/vanishing_figure.py --out logs/vanishing --figure my.png -- trainer.max_epochs=10

Each run is ``python train.py experiment=vanishing cell=<rnn|lstm> seed=<seed>``; the figure shows, per
cell, log10 ||dL/dh_t|| and ||dL/dx_t|| over the time steps t (x) and the epochs (y), and the script
prints each run's test MSE (the mean predictor scores about 0.167) and the ratio of the gradient at
the last step to the one at the first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnkit.training.callbacks import plot_gradient_flow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="logs/vanishing")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "vanishing.png"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    runs = {}
    for cell in args.cells:
        out = Path(args.out) / cell
        command = [
            sys.executable,
            str(ROOT / "train.py"),
            "experiment=vanishing",
            f"cell={cell}",
            f"seed={args.seed}",
        ]
        proc = subprocess.run(
            [*command, "trainer.enable_progress_bar=false", *args.overrides, f"hydra.run.dir={out}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"{cell} failed:\n{proc.stderr[-3000:]}")
        saved = np.load(out / "gradient_flow.npz")
        metrics = json.loads((out / "metrics.json").read_text())
        runs[f"{cell}:"] = (saved["epochs"], saved["state"], saved["input"])
        last = saved["state"][-1]  # the last measured epoch
        print(
            f"{cell}: test MSE {metrics['test/mse']:.4f} (mean predictor {metrics['baseline/mse']:.4f}); "
            f"last epoch ||dL/dh_1|| / ||dL/dh_T|| = {last[0] / last[-1]:.2e}, "
            f"||dL/dx_1|| = {saved['input'][-1][0]:.2e}"
        )
    figure = Path(args.figure)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_gradient_flow(runs, figure)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
