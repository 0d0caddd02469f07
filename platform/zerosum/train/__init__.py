"""Training G and D on Ray Train.

    build       models, optimisers and noise from a JobSpec (pure torch)
    steps       one phase of any method (run_phase), rounds, the metric window, EMA
    session     where the loop runs (Ray Train worker or single-process Tune trial)
    state       what a worker trains and checkpoints; restoring it
    loop        the worker loop: rounds, logging, evals, checkpoints
    checkpoint  self-describing, atomic checkpoint files
    driver      `zerosum run`: run folder, MLflow run, TorchTrainer, final model
"""
