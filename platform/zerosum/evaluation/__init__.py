"""Evaluation of a job's generator with `evals`, in training and after it.

    plan         which features, which checks, which stopping rule (pure decisions)
    reference    the real side: held-out reals through the extractor, cached on disk
    collectives  all-reduce / all-gather / broadcast across Ray Train workers
    evaluator    in training: sample per rank, merge, score once on rank 0, maybe stop
    featurizer   the classifier behind domain FID, trained once and cached
    offline      `zerosum eval`: a model URI or image folder against reals
"""
