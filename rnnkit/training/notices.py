"""Library notices that are not a user's business, silenced one by one where they come from.

Each entry names one message and the library that emits it; every other warning and log line still
reaches the console (issue 28). What is silenced and why:

- Lightning's tips to install ``litlogger`` and ``litmodels`` (advertisements, logged at INFO by
  ``lightning.pytorch.utilities.rank_zero`` on every Trainer);
- torch >= 2.10's ``LeafSpec`` deprecation, raised inside Lightning's own ``_pytree`` helper (Lightning's
  code, nothing a user of rnnkit can change);
- aeon's ``NumbaTypeSafetyWarning`` ("unsafe cast from uint64 to int64") from its own DTW code, when
  Numba first compiles it in an environment (``data=ucr``'s 1-NN DTW baseline): aeon's indices, not
  the user's data.

Lightning's warnings about a run's own settings (``log_every_n_steps``, callbacks missing when a
checkpoint is restored) are not silenced: rnnkit no longer causes them (``run.build`` sets the
logging interval to the epoch's length when it is shorter, ``run.evaluate`` loads the weights itself).
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGER = "lightning.pytorch.utilities.rank_zero"
TIPS = ("💡 Tip: For seamless cloud logging", "💡 Tip: For seamless cloud uploads")
WARNINGS = [  # (message regex, category, module regex of the line that warns)
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # any category (importing numba for its own would cost every run ~0.5 s); Numba names the module
    # by its file's path
    (r".*unsafe cast from uint64 to int64", Warning, r".*aeon[./\\]distances[./\\]"),
]


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIPS)


_TIP_FILTER = _DropTips()


def silence_library_notices() -> None:
    """Install the filters above (idempotent)."""
    logger = logging.getLogger(LIGHTNING_LOGGER)
    if _TIP_FILTER not in logger.filters:
        logger.addFilter(_TIP_FILTER)
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
