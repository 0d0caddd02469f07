"""Ray Tune campaigns over job-spec fields (`zerosum tune`).

    schema      the campaign section's pydantic models
    campaign    loading a campaign file, every check before anything starts, trial_spec
    space       dotted search paths and their Tune domains
    schedulers  ASHA / PBT / FIFO and random / grid / Optuna
    trial       what one trial runs: the `zerosum run` loop under a Tune session
    driver      the campaign folder, parent MLflow run, Tuner, and the end
    report      trials.csv and plots, from the trials' own ledgers
    champion    the best surviving checkpoint, registered with alias `champion`
    progress    the rich progress line (a Tune callback)
"""
