"""evals: GAN evaluation metrics and stopping rules (FID, KID, MMD test, mode coverage).

Imports only torch, numpy, scipy and (lazily, for Inception features)
torch-fidelity; never ray, mlflow or zerosum. Submodules:

- ``evals.stats``: ``FeatureStats``, mergeable float64 feature moments.
- ``evals.fid``: ``frechet_distance`` (reference), ``FIDReference`` and ``stats_to_fid`` (fast).
- ``evals.mmd``: unbiased MMD^2, ``kid``, ``mmd_permutation_test``.
- ``evals.features``: input protocol and extractors (inception, classifier, identity).
- ``evals.classifier``: the domain classifier, its training and its files.
- ``evals.inception``: TF-FID Inception weight resolution and conversion.
- ``evals.modes``: mode coverage for 2-D mixtures and class histograms.
- ``evals.stopping``: stopping rules with checkpointable state.
- ``evals.metrics``: one evaluation's metrics under zerosum's keys (``eval/fid``, ...).
"""
