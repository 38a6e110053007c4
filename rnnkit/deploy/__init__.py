"""Taking a trained model out of Python: inference modules per task shape and the files they export
to (ONNX, TorchScript, torch.export). ``python export.py`` drives both; see the README's "Deploy"."""

from rnnkit.deploy.formats import FORMATS, load, write
from rnnkit.deploy.inference import Forecaster, SequenceScorer, Stepper

__all__ = ["FORMATS", "Forecaster", "SequenceScorer", "Stepper", "load", "write"]
