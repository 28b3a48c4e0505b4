"""Turn extracted activations into numbers: histograms, entropy, divergences, patterns, probes.

The study-level names (:func:`compare_study`, :class:`StudyResults`, …) are loaded on first use
(PEP 562): importing one light submodule (``cnnscope.analysis.sample_order``, ``.information``,
``.cka``) must not import the whole comparison — pandas and SciPy — with it: a
per-network stage pays every import once per process (issue 22, item 7; ``tests/test_stage_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnscope.analysis.information import entropy, js_divergence, kl_divergence, probabilities, smoothed

if TYPE_CHECKING:
    from cnnscope.analysis.study import Roles, StudyError, StudyResults, compare_study

_STUDY = ("Roles", "StudyError", "StudyResults", "compare_study")

__all__ = [
    "Roles",
    "StudyError",
    "StudyResults",
    "compare_study",
    "entropy",
    "js_divergence",
    "kl_divergence",
    "probabilities",
    "smoothed",
]


def __getattr__(name: str) -> Any:
    if name in _STUDY:
        from cnnscope.analysis import study

        return getattr(study, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
