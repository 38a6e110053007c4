"""LightningDataModules for the four task shapes; every default dataset is bundled or generated."""

from rnnkit.data.base import DataSpec, SequenceDataModule
from rnnkit.data.classify import AddingDataModule, DigitsDataModule
from rnnkit.data.generate import DigitNamesDataModule, WaveformDataModule
from rnnkit.data.reber import ReberDataModule
from rnnkit.data.sequence_files import SequenceFileDataModule
from rnnkit.data.sequence_pairs import (
    AdditionDataModule,
    EchoDataModule,
    ReversalDataModule,
    TextPairsDataModule,
    TextPairsFileDataModule,
)
from rnnkit.data.text_corpus import TextCorpusDataModule
from rnnkit.data.timeseries import TimeSeriesDataModule
from rnnkit.data.ucr import UCRDataModule

__all__ = [
    "AddingDataModule",
    "AdditionDataModule",
    "DataSpec",
    "DigitNamesDataModule",
    "DigitsDataModule",
    "EchoDataModule",
    "ReberDataModule",
    "ReversalDataModule",
    "SequenceDataModule",
    "SequenceFileDataModule",
    "TextCorpusDataModule",
    "TextPairsDataModule",
    "TextPairsFileDataModule",
    "TimeSeriesDataModule",
    "UCRDataModule",
    "WaveformDataModule",
]
