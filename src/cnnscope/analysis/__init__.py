"""Turn extracted activations into numbers: histograms, entropy, divergences, patterns, probes."""

from cnnscope.analysis.information import entropy, js_divergence, kl_divergence, probabilities, smoothed
from cnnscope.analysis.study import StudyError, StudyResults, compare_study

__all__ = [
    "StudyError",
    "StudyResults",
    "compare_study",
    "entropy",
    "js_divergence",
    "kl_divergence",
    "probabilities",
    "smoothed",
]
