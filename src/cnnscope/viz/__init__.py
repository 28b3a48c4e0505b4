"""Figures only: functions take arrays and tables and write deterministic PNGs.

``viz`` computes no statistics and reads no checkpoints; see :func:`save_figure` for why the
bytes are stable.
"""

from cnnscope.viz.common import save_figure

__all__ = ["save_figure"]
