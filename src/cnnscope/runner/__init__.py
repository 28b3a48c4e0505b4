"""``cnnscope repro``: run the stages of ``dvc.yaml`` side by side on a Dask cluster.

DVC runs a pipeline's stages one after another (its issue 755). This package runs every stage
whose upstream stages are done as soon as a worker is free, and lets DVC itself run and record
each one (``dvc --wait-for-lock repro --single-item <stage>``): DVC takes its repository lock only
to check and record a stage, never while the stage's command runs, so the run cache, ``dvc.lock``,
metrics and plots come out exactly as ``dvc repro`` writes them, through DVC's public CLI only.

- :mod:`.dag` reads the stage graph and what is out of date (``dvc dag --dot``, ``dvc status``)
  and plans the stages to run; stages go by their own names (``train@benchmark-0``) and DVC gets
  their address (``stages/train/dvc.yaml:train@benchmark-0``);
- :mod:`.cluster` starts or connects to the Dask cluster (local processes, a scheduler address,
  or SLURM/PBS through dask-jobqueue, from ``conf/runner/``);
- :mod:`.task` is what a worker runs for one stage; :mod:`.shim` keeps the stage's processes
  tied to the worker, so a killed worker interrupts its stage cleanly; :mod:`.warm` is the worker's
  warm server, which runs each stage in a fork of a process that has imported torch already (the
  stage process DVC starts hands itself over: :mod:`cnnscope.handoff`);
- :mod:`.schedule` is the loop that submits ready stages and follows them; :mod:`.display` shows
  it live and sums it up.
"""
