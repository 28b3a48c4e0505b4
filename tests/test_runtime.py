"""The process-wide CPU settings every stage applies (cnnscope.runtime)."""

from __future__ import annotations

import sys

import pytest
import torch

from cnnscope import runtime


def test_memory_settings_take_effect_on_glibc_and_are_no_ops_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux/glibc both settings report success (the stages rely on them for speed and peak
    memory); on another platform they do nothing and say so instead of failing."""
    if sys.platform.startswith("linux"):
        assert runtime.keep_freed_memory() and runtime.release_freed_memory()
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert not runtime.keep_freed_memory() and not runtime.release_freed_memory()


def test_set_threads_fixes_torchs_thread_count() -> None:
    """Byte-stable float reductions need a fixed thread count (the ``runtime.threads`` param)."""
    before = torch.get_num_threads()
    try:
        runtime.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        runtime.set_threads(before)
