"""Training trajectories: every map layer measured at each checkpoint kept along training.

``measures`` (one streaming pass: Hoyer, normalised entropy, CKA to the initial and final network,
spatial probe, top image of the tracked maps) · ``oips`` (the tracked maps' OIPs per checkpoint,
same noise) · ``run`` (one network's trajectory and its files) · ``collect`` (the study's
trajectories read back, and the matched-step differences).
"""

from cnnscope.trajectory.run import (
    MAPS_TABLE,
    TABLE,
    TENSORS,
    Trajectory,
    TrajectoryError,
    load_checkpoints,
    run_trajectory,
)

__all__ = ["MAPS_TABLE", "TABLE", "TENSORS", "Trajectory", "TrajectoryError", "load_checkpoints", "run_trajectory"]
