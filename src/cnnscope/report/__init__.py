"""Assemble ``reports/<study>/README.md`` and the index ``reports/README.md`` from stage outputs only
(nothing in ``reports/`` is hand-written)."""

from cnnscope.report.assemble import build_report

__all__ = ["build_report"]
