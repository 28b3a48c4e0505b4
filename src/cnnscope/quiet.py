"""A stage's log shows progress and results: the known third-party messages that say nothing about
the run are dropped here, each by its own text, so that any new warning still shows.

Why not a blanket filter: a warning from a dependency can be the first sign of a real problem
(a changed default, a numerical issue). Only messages checked to be noise for this project are
named, with the reason beside each.
"""

from __future__ import annotations

import logging
import warnings

#: Where Lightning logs its info lines (``rank_zero_info``), the "💡 Tip" adverts among them.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"

#: ``(category, message regex, module regex)`` of expected warnings, none of which asks anything
#: of a user of this project.
KNOWN_WARNINGS: list[tuple[type[Warning], str, str]] = [
    # Lightning's own pytree helper uses the LeafSpec that torch deprecates; nothing to change on our side
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\."),
    # the train stage writes initial.ckpt into its run folder before Lightning saves there
    (UserWarning, r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch\."),
    # the training loss is logged per epoch (on_epoch only), so step logging never applies
    (UserWarning, r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\."),
]


class _NoCloudTips(logging.Filter):
    """Drops Lightning's adverts for its cloud products (litlogger, litmodels), printed by every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_third_party() -> None:
    """Install the filters for this process; calling it again changes nothing."""
    for category, message, module in KNOWN_WARNINGS:
        # filterwarnings replaces an identical earlier entry rather than adding a second one
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    lightning = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _NoCloudTips) for f in lightning.filters):
        lightning.addFilter(_NoCloudTips())
