"""LightningModules for the four sequence task shapes; each takes any registered cell."""

from rnnkit.tasks.base import NonFiniteError, SequenceTask
from rnnkit.tasks.many_to_many import ManyToMany
from rnnkit.tasks.many_to_one import ManyToOne
from rnnkit.tasks.next_step import NextStep
from rnnkit.tasks.one_to_many import OneToMany
from rnnkit.tasks.summary import ConvBranch

__all__ = ["ConvBranch", "ManyToMany", "ManyToOne", "NextStep", "NonFiniteError", "OneToMany", "SequenceTask"]
