"""The stage log drops Lightning's cloud tips and the known third-party warnings, and nothing else."""

from __future__ import annotations

import logging
import warnings

import pytest

from cnnscope.errors import LIGHTNING_INFO_LOGGER, quiet_third_party


def _shown(message: str, category: type[Warning], module: str) -> bool:
    """Whether ``warnings`` would show ``message`` issued from ``module`` under the quiet filters."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        quiet_third_party()  # twice: still one filter each
        warnings.warn_explicit(message, category, "x.py", 1, module=module)
    return bool(caught)


@pytest.mark.parametrize(
    ("message", "category", "module"),
    [
        ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, "lightning.pytorch.utilities.a"),
        ("Checkpoint directory /x/.seed0.partial exists and is not empty.", UserWarning, "lightning.pytorch.b"),
        ("The number of training batches (6) is smaller than the logging interval", UserWarning, "lightning.pytorch.c"),
    ],
)
def test_known_lightning_warnings_are_dropped(message: str, category: type[Warning], module: str) -> None:
    assert not _shown(message, category, module)


def test_other_warnings_still_show() -> None:
    assert _shown("something new is deprecated", FutureWarning, "lightning.pytorch.utilities._pytree")
    assert _shown("Checkpoint directory /x exists and is not empty.", UserWarning, "cnnscope.training")


def test_cloud_tips_are_dropped_and_other_info_kept() -> None:
    quiet_third_party()
    quiet_third_party()
    log = logging.getLogger(LIGHTNING_INFO_LOGGER)
    assert sum(type(f).__name__ == "_NoCloudTips" for f in log.filters) == 1
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        log.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]
