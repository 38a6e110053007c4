"""rnnkit: recurrent sequence models for PyTorch."""

from rnnkit import cells, nn

__version__ = "0.1.0"
__all__ = ["cells", "nn", "__version__"]
