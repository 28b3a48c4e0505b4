"""Turn extracted activations into numbers: histograms, entropy, divergences, patterns, probes."""

from cnnscope.analysis.information import entropy, js_divergence, kl_divergence, probabilities, smoothed
from cnnscope.analysis.study import Roles, StudyError, StudyResults, compare_study

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
