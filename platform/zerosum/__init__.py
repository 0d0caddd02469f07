"""zerosum: distributed training and evaluation of GANs on Ray, tracked in MLflow."""

__version__ = "0.1.0"
