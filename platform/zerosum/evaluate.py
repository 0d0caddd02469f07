"""`zerosum eval`: score a generator (or a folder of images) against real data.

    zerosum eval --real jobs/mnist-dcgan.yaml --fake models:/mnist-dcgan@candidate --metrics fid,kid,mmd,classes
    zerosum eval --real path/to/real_pngs --fake path/to/fake_pngs --metrics fid,kid --features inception

The real side is a job spec (its dataset's held-out split) or an image folder; the
fake side is an MLflow model URI or an image folder. Prints a table and, with
`--log-to EXPERIMENT`, records the numbers as an MLflow run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from evals.stats import FeatureStats
from zerosum.config import JobSpec, load_job, validate_job
from zerosum.data import load_dataset
from zerosum.errors import ConfigError, ZerosumError
from zerosum.featurizer import prepare_eval_spec
from zerosum.train.evaluation import build_extractor, extract, real_reference, score

METRICS = ("fid", "kid", "mmd", "modes", "classes")


def parse_metrics(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise ConfigError(f"--metrics: unknown {', '.join(unknown) or '(none given)'}; allowed: {', '.join(METRICS)}")
    return names


def folder_spec(folder: Path) -> dict:
    """A data section for an image folder, sized from its first image."""
    from PIL import Image

    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not images:
        raise ZerosumError(f"{folder}: no .png/.jpg images found")
    with Image.open(images[0]) as first:
        channels = 1 if first.mode in ("L", "1", "I;16") else 3
        return {"name": "folder", "root": str(folder), "image_size": first.size[0], "channels": channels,
                "scale": "unit"}


def evaluation_spec(args: argparse.Namespace) -> JobSpec:
    """The real side as a JobSpec whose eval section holds the CLI's choices."""
    if args.real.is_dir():
        raw = {"name": "eval", "data": folder_spec(args.real), "schedule": {"max_rounds": 1}}
        spec = validate_job(raw, source=str(args.real))
    else:
        spec = load_job(args.real, args.overrides)
    evals = {"metrics": args.metrics, "num_samples": args.num_samples, "features": args.features,
             "mmd_permutations": args.permutations}
    if args.featurizer:
        evals["featurizer_path"] = args.featurizer.resolve()
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update=evals)})
    return prepare_eval_spec(spec)


def load_fakes(args: argparse.Namespace, spec: JobSpec) -> tuple[torch.Tensor, str]:
    """(fakes, their scale): from an image folder sized like the reals, or a logged generator."""
    if Path(args.fake).is_dir():
        data = spec.data.model_copy(update={"name": "folder", "root": Path(args.fake).resolve(), "scale": "unit",
                                            "image_size": spec.data.image_size or 28})
        return load_dataset(data).samples[: args.num_samples], "unit"
    from zerosum.sampling import class_labels, draw_noise
    from zerosum.tracking import load_generator

    try:
        model, metadata = load_generator(args.fake)
    except Exception as err:  # mlflow raises several types for a bad URI
        raise ZerosumError(f"--fake {args.fake}: cannot load model ({err})") from None
    z = draw_noise(metadata, args.num_samples, args.seed)
    y = class_labels(metadata, args.num_samples, None, args.seed)
    with torch.no_grad():
        return (model(z) if y is None else model(z, y)), "unit"


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    spec = evaluation_spec(args)
    is_image = spec.data.name not in ("ring8", "grid25")
    fakes, scale = load_fakes(args, spec)
    if not set(spec.eval.metrics) - {"modes"}:
        return score(spec, fakes, None, None, None, None, round_index=0)
    sample_shape = tuple(load_dataset(spec.data, "test").sample_shape)
    extractor = build_extractor(spec, sample_shape, torch.device(args.device))
    reference = real_reference(spec, extractor, is_image)
    features, probs = extract(extractor, fakes, scale, is_image)
    return score(spec, fakes, features, FeatureStats.from_features(features), probs, reference, round_index=0)


def print_table(metrics: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}")
    Console().print(table)


def cmd_eval(args: argparse.Namespace) -> int:
    args.metrics = parse_metrics(args.metrics)
    metrics = evaluate(args)
    print_table(metrics, f"{args.fake} vs {args.real}")
    if args.log_to:
        from zerosum import tracking

        uri = tracking.resolve_tracking_uri()
        params = {"real": str(args.real), "fake": str(args.fake), "num_samples": args.num_samples,
                  "features": args.features, "metrics": ",".join(args.metrics)}
        run_id = tracking.start_run(uri, args.log_to, "eval", params, "", tags={"zerosum.kind": "eval"})
        tracking.RunLogger(uri, run_id).log_metrics(metrics, step=0)
        tracking.end_run(uri, run_id)
        print(f"logged to MLflow run {run_id} in experiment '{args.log_to}'")
    return 0


def register_commands(commands) -> None:
    parser = commands.add_parser("eval", help="score generated samples against real data (FID, KID, MMD, modes)")
    parser.add_argument("--real", type=Path, required=True, help="job spec (YAML) or folder of real images")
    parser.add_argument("--fake", required=True, help="model URI (models:/NAME@alias, runs:/ID/generator) or folder")
    parser.add_argument("--metrics", default="fid,kid,mmd", help=f"comma-separated: {','.join(METRICS)}")
    parser.add_argument("--features", default="auto", choices=["auto", "classifier", "inception", "identity"])
    parser.add_argument("--featurizer", type=Path, help="classifier weights (default: cached, trained if missing)")
    parser.add_argument("-n", "--num-samples", type=int, default=1000, help="fakes and reals to compare")
    parser.add_argument("--permutations", type=int, default=500, help="MMD permutation-test permutations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE")
    parser.add_argument("--log-to", metavar="EXPERIMENT", help="also record the numbers as an MLflow run")
    parser.set_defaults(handler=cmd_eval)
