"""Metric collections per prediction kind (torchmetrics), and the few metrics torchmetrics lacks."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    SymmetricMeanAbsolutePercentageError,
)


class MeanAbsoluteScaledError(Metric):
    """MASE: MAE divided by the in-sample MAE of the seasonal naive forecast (``scale``)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, scale: float) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"MASE scale must be positive, got {scale}")
        self.scale = scale
        self.add_state("abs_error", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.abs_error += (preds - target).abs().sum().double()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return (self.abs_error / self.count / self.scale).float()


class MeanCrossEntropy(Metric):
    """Mean cross-entropy over valid steps; ``preds`` are logits ``(N, V)``, targets ``(N,)``.

    ``unit="nats"`` (natural log), ``"bits"`` (log base 2: bits per symbol) or ``"perplexity"``
    (exp of the mean in nats)."""

    higher_is_better = False
    full_state_update = False
    UNITS = ("nats", "bits", "perplexity")

    def __init__(self, unit: str = "nats") -> None:
        super().__init__()
        if unit not in self.UNITS:
            raise ValueError(f"unit must be one of {self.UNITS}, got {unit!r}")
        self.unit = unit
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.total += torch.nn.functional.cross_entropy(preds.float(), target, reduction="sum").double()
        self.count += target.numel()

    def compute(self) -> Tensor:
        mean = self.total / self.count
        if self.unit == "perplexity":
            mean = mean.exp()
        elif self.unit == "bits":
            mean = mean / math.log(2)
        return mean.float()


class TokenAccuracy(Metric):
    """Fraction of valid positions predicted right. ``preds``/``target``: ``(B, U)`` token ids, target
    ``-100`` where padded."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        valid = target != -100
        self.correct += ((preds == target) & valid).sum()
        self.count += valid.sum()

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp(min=1)


class SequenceExactMatch(Metric):
    """Fraction of sequences whose every valid position is right (same inputs as TokenAccuracy)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        valid = target != -100
        self.correct += (((preds == target) | ~valid).all(dim=1)).sum()
        self.count += target.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp(min=1)


def series_metrics(mase_scale: float) -> MetricCollection:
    return MetricCollection(
        {
            "mae": MeanAbsoluteError(),
            "rmse": MeanSquaredError(squared=False),
            "smape": SymmetricMeanAbsolutePercentageError(),
            "mape": MeanAbsolutePercentageError(),
            "mase": MeanAbsoluteScaledError(mase_scale),
        }
    )


class IntervalCoverage(Metric):
    """Share of targets inside the central ``level`` interval of the sample paths (the quantiles
    (1-level)/2 and (1+level)/2). ``preds``: samples ``(S, ...)``; ``target``: ``(...)``. A calibrated
    forecast covers ``level`` of the targets."""

    higher_is_better = None
    full_state_update = False

    def __init__(self, level: float) -> None:
        super().__init__()
        if not 0 < level < 1:
            raise ValueError(f"interval level must lie in (0, 1), got {level}")
        self.level = level
        self.add_state("inside", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        levels = [(1 - self.level) / 2, (1 + self.level) / 2]
        levels = torch.tensor(levels, dtype=preds.dtype, device=preds.device)
        lo, hi = torch.quantile(preds, levels, dim=0)
        self.inside += ((target >= lo) & (target <= hi)).sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return self.inside.float() / self.count.clamp(min=1)


class SampleCRPS(Metric):
    r"""Continuous ranked probability score of sample paths (lower is better, in the target's units):
    CRPS(F, y) = E|X - y| - E|X - X'|/2 with X, X' ~ F, estimated from the S samples (the second term
    from the sorted samples, O(S log S)). Equals the MAE for a point forecast."""

    higher_is_better = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        samples = preds.double()
        s = samples.shape[0]
        spread = (samples - target.double()).abs().mean(0)  # E|X - y|
        ordered = samples.sort(dim=0).values
        weights = (2 * torch.arange(1, s + 1, dtype=torch.float64, device=preds.device) - s - 1).view(
            -1, *([1] * (samples.dim() - 1))
        )
        pairwise = 2 * (weights * ordered).sum(0) / (s * s)  # E|X - X'| over ordered pairs
        self.total += (spread - pairwise / 2).sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count).float()


def interval_metrics() -> MetricCollection:
    """Metrics of sample-path forecasts: 80% and 95% interval coverage, CRPS."""
    return MetricCollection(
        {"coverage80": IntervalCoverage(0.8), "coverage95": IntervalCoverage(0.95), "crps": SampleCRPS()}
    )


def class_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


def regression_metrics() -> MetricCollection:
    return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})


def token_metrics() -> MetricCollection:
    return MetricCollection({"token_acc": TokenAccuracy(), "exact_match": SequenceExactMatch()})


def _unpack_symbol_target(target: Tensor) -> tuple[Tensor, Tensor]:
    """Symbol targets travel as ``(B, T, 1 + V)``: the next symbol (or -100) then the legal set."""
    return target[..., 0], target[..., 1:].bool()


class SymbolCrossEntropy(MeanCrossEntropy):
    """Cross-entropy (or perplexity) of next-symbol logits ``(B, T, V)`` over valid steps."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        nxt, _ = _unpack_symbol_target(target)
        valid = nxt != -100
        super().update(preds[valid], nxt[valid])


class SymbolAccuracy(TokenAccuracy):
    """Argmax of the logits equals the symbol that came next."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        nxt, _ = _unpack_symbol_target(target)
        super().update(preds.argmax(-1), nxt)


class LegalSetStringAccuracy(Metric):
    """Fraction of strings predicted right at every step: at each valid step the k most probable
    symbols are exactly the k symbols the grammar allows next (the Reber-grammar criterion)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        nxt, legal = _unpack_symbol_target(target)
        valid = nxt != -100  # (B, T)
        k = legal.sum(-1, keepdim=True)  # (B, T, 1)
        rank = preds.argsort(-1, descending=True).argsort(-1)  # rank of each symbol, 0 = most probable
        chosen = rank < k  # the k most probable
        step_ok = (chosen == legal).all(-1) | ~valid
        self.correct += step_ok.all(-1).sum()
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp(min=1)


def symbol_metrics(legal_next: bool = False) -> MetricCollection:
    """Next-symbol metrics; with ``legal_next`` (targets carry a grammar's legal sets) also the
    legal-set string accuracy."""
    metrics: dict[str, Metric] = {
        "cross_entropy": SymbolCrossEntropy(),
        "bits_per_symbol": SymbolCrossEntropy(unit="bits"),
        "perplexity": SymbolCrossEntropy(unit="perplexity"),
        "symbol_acc": SymbolAccuracy(),
    }
    if legal_next:
        metrics["string_acc"] = LegalSetStringAccuracy()
    return MetricCollection(metrics)
