"""Progress bars draw on a terminal and stay silent in CI and pipes."""

from __future__ import annotations

import io
import sys

import pytest

from cnnscope import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_without_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CNNSCOPE_QUIET", raising=False)
    with progress.track("oip", 10, "mean objective") as advance:
        for _ in range(10):
            advance(1, 0.5)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_draws_steps_value_and_time_left_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CNNSCOPE_QUIET", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.track("oip benchmark seed0", 30, "mean objective") as advance:
        for step in range(30):
            advance(1, 1.25 + step)
    text = terminal.getvalue()
    assert "oip benchmark seed0" in text and "30/30" in text and "mean objective 30.25" in text


def test_ci_variable_silences_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setenv("CI", "true")
    assert not progress.interactive()
    with progress.track("extract", 3) as advance:
        advance(3)
    assert sys.stderr.getvalue() == ""
