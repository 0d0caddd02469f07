"""How well an InfoGAN's categorical code separates classes: matched accuracy (Chen et al. 2016
report 5% error on MNIST with 10 categories).

Draws `--per-code` samples of each category from a logged InfoGAN, classifies them with the
domain classifier (zerosum's cached featurizer), matches categories to classes one-to-one
(Hungarian, evals.modes.matched_accuracy) and prints the accuracy and the matching.

    .venv/bin/python bench/infogan_categories.py models:/mnist-infogan@candidate [--per-code 500]
"""

from __future__ import annotations

import argparse

import torch

from evals.classifier import classifier_features, load_classifier
from evals.modes import matched_accuracy
from zerosum.config import DataSpec
from zerosum.evaluation.featurizer import featurizer_path
from zerosum.serving import draw_noise, load_generator


def category_accuracy(model_uri: str, per_code: int, dataset: str) -> tuple[float, list[tuple[int, int]]]:
    """(matched accuracy, [(most frequent class, its count)] per code) of an InfoGAN's categories."""
    model, metadata = load_generator(model_uri)
    categories = int(metadata["codes"]["categorical"])
    # The cached featurizer of `zerosum featurizer train --dataset NAME` (or of a first `zerosum run`).
    classifier, _ = load_classifier(featurizer_path(DataSpec.model_construct(name=dataset)))
    codes, predicted = [], []
    with torch.no_grad():
        for k in range(categories):
            images = model(draw_noise(metadata, per_code, seed=k, code=k))
            _, probs = classifier_features(classifier, images)
            codes.append(torch.full((per_code,), k))
            predicted.append(probs.argmax(1))
    codes, predicted = torch.cat(codes), torch.cat(predicted)
    accuracy = matched_accuracy(codes, predicted, categories, probs.shape[1])
    counts = [torch.bincount(predicted[codes == k], minlength=probs.shape[1]) for k in range(categories)]
    return accuracy, [(int(c.argmax()), int(c.max())) for c in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_uri")
    parser.add_argument("--per-code", type=int, default=500)
    parser.add_argument("--dataset", default="mnist")
    args = parser.parse_args()
    accuracy, modes = category_accuracy(args.model_uri, args.per_code, args.dataset)
    print(f"categories: {len(modes)}  samples per code: {args.per_code}")
    print(f"matched accuracy: {accuracy:.4f}  (error {1 - accuracy:.2%}; InfoGAN paper: 5% error on MNIST)")
    for k, (label, count) in enumerate(modes):
        print(f"  code {k}: most often class {label} ({count}/{args.per_code})")

if __name__ == "__main__":
    main()
