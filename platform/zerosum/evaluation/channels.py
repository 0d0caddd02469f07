"""A one-channel domain classifier applied to every channel of an image (Stacked MNIST).

Stacked MNIST (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018) stacks three MNIST
digits as R, G, B; both papers score its 1000 classes by classifying each channel with an
MNIST classifier. `ChannelClassifierExtractor` does that behind the interface of evals'
extractors (name, dim, weights_path, __call__, features_and_probs), so that the `classes`
and `fid` metrics, in training and in `zerosum eval`, take it unchanged: its features are
the channels' features side by side, its probabilities are over channel-class tuples.

Torch and evals only: `plan.build_extractor` builds it, and the cached classifier (trained
when absent) is found in `stacked.py`, above `featurizer` in the import graph.
"""

from __future__ import annotations

import numpy as np
import torch

from evals.classifier import DomainClassifier, classifier_features, load_classifier
from zerosum.errors import ConfigError


def channel_features_and_probs(model: DomainClassifier, images, batch_size: int = 512
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel of uint8 or [0, 1] float images (N, C, S, S) classified as a one-channel
    image -> (features float64 (N, C, F), probs float64 (N, C, K)) on CPU."""
    images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, S, S); got shape {tuple(images.shape)}")
    count, channels = images.shape[:2]
    features, probs = classifier_features(model, images.reshape(count * channels, 1, *images.shape[2:]), batch_size)
    return features.reshape(count, channels, -1), probs.reshape(count, channels, -1)


def joint_class_probs(channel_probs: torch.Tensor) -> torch.Tensor:
    """float (N, C, K) per-channel probabilities -> float (N, K**C), the channels taken as
    independent: class index = the channels' classes as base-K digits, the first channel
    most significant (Stacked MNIST: 100 d_R + 10 d_G + d_B). Its argmax is the tuple of
    the channels' argmaxes, so a hard class histogram counts the channel-digit triples."""
    joint = channel_probs[:, 0]
    for channel in range(1, channel_probs.shape[1]):
        joint = (joint[:, :, None] * channel_probs[:, channel, None, :]).reshape(len(joint), -1)
    return joint


class ChannelClassifierExtractor:
    """A one-channel DomainClassifier (weights_path) judging each of `channels` channels.

    __call__(images (N, C, S, S)) -> float64 (N, C * F); features_and_probs -> that and
    float64 (N, K**C) joint class probabilities (`joint_class_probs`)."""

    name = "classifier-channels"

    def __init__(self, weights_path, *, channels: int = 3, device="cpu", batch_size: int = 512):
        model, self.meta = load_classifier(weights_path, device=device)
        if model.config["in_channels"] != 1:
            raise ConfigError(f"eval.featurizer_path: {weights_path} classifies {model.config['in_channels']}-channel "
                              "images; a dataset judged channel by channel needs a one-channel classifier "
                              "(`zerosum featurizer train --dataset mnist`)")
        self.model, self.weights_path, self.batch_size = model, weights_path, int(batch_size)
        self.channels = int(channels)
        self.dim = self.channels * int(model.config["feature_dim"])
        self.num_classes = int(model.config["num_classes"]) ** self.channels

    def features_and_probs(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """images uint8 or [0, 1] float (N, C, S, S) -> (float64 (N, C * F), float64 (N, K**C))."""
        features, probs = channel_features_and_probs(self.model, images, self.batch_size)
        if features.shape[1] != self.channels:
            raise ValueError(f"images must have {self.channels} channels; got {features.shape[1]}")
        return features.reshape(len(features), -1), joint_class_probs(probs)

    def __call__(self, images) -> torch.Tensor:
        return self.features_and_probs(images)[0]
