"""LightningDataModules for the four task shapes; every default dataset is bundled or generated."""

from rnnkit.data.base import DataSpec, SequenceDataModule
from rnnkit.data.timeseries import TimeSeriesDataModule

__all__ = ["DataSpec", "SequenceDataModule", "TimeSeriesDataModule"]
