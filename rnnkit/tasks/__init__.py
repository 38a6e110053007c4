"""LightningModules for the four sequence task shapes; each takes any registered cell."""

from rnnkit.tasks.base import SequenceTask
from rnnkit.tasks.next_step import NextStep

__all__ = ["NextStep", "SequenceTask"]
