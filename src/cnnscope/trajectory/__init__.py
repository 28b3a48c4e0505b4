"""Training trajectories: every map layer measured at each checkpoint kept along training.

``measures`` (one streaming pass: Hoyer, normalised entropy, CKA to the initial and final network,
spatial probe, top image of the tracked maps) · ``oips`` (the tracked maps' OIPs per checkpoint,
same noise) · ``run`` (one network's trajectory and its files) · ``collect`` (the study's
trajectories read back, for the report). Nothing is imported here, so the report can read
trajectories (``collect``) without loading the measuring code.
"""
