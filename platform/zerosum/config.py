"""Job specs: pydantic models loaded once from YAML, with `--set a.b=value` overrides.

A spec is validated in full before anything starts. Every error is a `ConfigError`
whose message names the field path (`optim.d.lr`), the bad value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zerosum.catalog import (
    ACTIVATION_NAMES,
    ARCH_NAMES,
    AUGMENT_POLICIES,
    DATASET_NAMES,
    DATASETS,
    DCGAN_SIDES,
    EVAL_METRICS,
    EVAL_NUM_SAMPLES,
    FEATURE_KINDS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    LOSS_NAMES,
    LR_DECAY_NAMES,
    METHOD_NAMES,
    MMD_PERMUTATIONS,
    OPTIMIZER_NAMES,
    OUTPUT_NAMES,
    SSIM_MIN_SIDE,
    STREAMABLE_DATASETS,
    TASK_NAMES,
    TRANSLATION_METHODS,
    TRANSLATOR_ARCHS,
)
from zerosum.errors import ConfigError

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a spec must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(StrictModel):
    name: Literal[DATASET_NAMES]
    root: Path | None = Field(None, description="folder with the raw files (mnist, fashion-mnist, folder)")
    download: bool = Field(False, description="let torchvision download mnist/fashion-mnist into root")
    scale: Literal["unit", "symmetric"] = Field("symmetric", description="pixels in [0,1] or [-1,1]")
    image_size: PositiveInt | None = Field(None, description="folder: resize images to this side, px")
    channels: Literal[1, 3] = Field(1, description="folder: 1 (greyscale) or 3 (RGB)")
    num_samples: PositiveInt = Field(50_000, description="toy mixtures: points in the training set (and "
                                                         "the test split); stacked-mnist: training images")
    seed: int = Field(0, description="stacked-mnist: seeds which digits are stacked (the test split: seed + 1)")
    limit: PositiveInt | None = Field(None, description="use only the first N training examples")
    task: Literal[TASK_NAMES] = Field(
        "generate", description="generate: the images alone; superres, complete: (input, image) pairs "
                                "derived from each image; unpaired: data.source's images -> these")
    factor: PositiveInt = Field(4, description="superres: the input is the image area-downsampled by this")
    mask_size: PositiveInt = Field(12, description="complete: side of the square masked out, px")
    source: DataSpec | None = Field(None, description="unpaired: domain X, resized to this data's image side")
    streaming: bool = Field(False, description="read and decode the training images on Ray Data's CPU tasks, "
                                               "a shard per worker, instead of holding them in memory "
                                               "(folder, mnist, fashion-mnist; data.task generate)")

    @model_validator(mode="after")
    def _root_exists(self, info: ValidationInfo) -> DataSpec:
        if not DATASETS[self.name].on_disk:
            return self
        if self.root is None:
            raise ValueError(f"data.root is required for dataset '{self.name}'")
        check = (info.context or {}).get("check_paths", True)
        if check and not self.download and not Path(self.root).is_dir():
            raise ValueError(
                f"data.root '{self.root}' is not a directory; point it at the folder holding the "
                f"dataset files, or set data.download: true where the internet is reachable"
            )
        if self.name == "folder" and self.image_size is None:
            raise ValueError("data.image_size is required for dataset 'folder'")
        return self


def image_channels_and_side(data: DataSpec) -> tuple[int, int] | None:
    """(channels, side) of the spec's images without reading files; None for points."""
    info = DATASETS[data.name]
    if info.kind != "images":
        return None
    if info.sample_shape is None:
        return data.channels, data.image_size
    return info.sample_shape[0], info.sample_shape[1]


def streaming_problem(data: DataSpec) -> str | None:
    """Why data cannot be streamed through Ray Data, naming the field; None if it can."""
    if data.streaming and data.name not in STREAMABLE_DATASETS:
        return f"data.streaming: dataset '{data.name}' is held in memory; streamed: {', '.join(STREAMABLE_DATASETS)}"
    if data.streaming and data.task != "generate":
        return f"data.streaming: streams the images alone (data.task generate), not data.task {data.task}"
    return None


def task_problem(data: DataSpec) -> str | None:
    """Why data's task cannot be derived from it, naming the field; None if it can."""
    shape = image_channels_and_side(data)
    if data.task != "unpaired" and data.source is not None:
        return f"data.source: only data.task unpaired reads a second domain (data.task: {data.task})"
    if data.task == "generate":
        return None
    if shape is None:
        return f"data.task: {data.task} derives image pairs; data.name {data.name} holds points"
    channels, side = shape
    if data.task == "superres" and (data.factor < 2 or side % data.factor):
        divisors = [f for f in range(2, side + 1) if side % f == 0]
        return (f"data.factor: {data.factor} does not divide the image side {side} into a smaller image; "
                f"allowed: {', '.join(map(str, divisors))}")
    if data.task == "complete" and data.mask_size >= side:
        return f"data.mask_size: {data.mask_size} must be smaller than the image side {side}"
    if data.task == "unpaired":
        source = data.source
        if source is None:
            return "data.source: data.task unpaired needs a source domain (e.g. data.source: {name: digits})"
        source_shape = image_channels_and_side(source)
        if source_shape is None or source.task != "generate":
            return f"data.source: domain X must be plain images (data.source.name {source.name}, task {source.task})"
        if source_shape[0] != channels:
            return (f"data.source: domain X ({source.name}) has {source_shape[0]} channel(s) and domain Y "
                    f"({data.name}) has {channels}; CycleGAN's two domains need the same channel count "
                    f"(set data.channels or data.source.channels)")
    return None


Activation = Literal[ACTIVATION_NAMES]
Arch = Literal[ARCH_NAMES]


class GeneratorSpec(StrictModel):
    arch: Arch = "dcgan"
    z_dim: PositiveInt = 100
    z_distribution: Literal["normal", "uniform", "normal-minmax"] = Field(
        "normal", description="normal-minmax: N(0,1) rows min-max scaled to [0,1], as in the seed"
    )
    z_pool_size: PositiveInt | None = Field(
        None, description="draw z from a fixed pool of this many vectors (the seed reuses 60,000)"
    )
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 256])
    activation: Activation = "relu"
    output: Literal[OUTPUT_NAMES] = "tanh"
    base_channels: PositiveInt = 64
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class DiscriminatorSpec(StrictModel):
    arch: Arch = "dcgan"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 256])
    activation: Activation = "leaky_relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    base_channels: PositiveInt = 64
    batch_norm: bool = True
    spectral_norm: bool = False
    pack: PositiveInt = Field(1, description="PacGAN: D judges this many samples at once, stacked "
                                             "along channels (images) or features (points)")
    minibatch_std: bool = Field(False, description="append the minibatch std to D's features (Karras 2018)")


class CodesSpec(StrictModel):
    """InfoGAN's latent codes, appended to z: a categorical code and continuous ones."""

    categorical: NonNegativeInt = Field(0, description="classes of the categorical code (0: none)")
    continuous: NonNegativeInt = Field(0, description="continuous codes, uniform in [-1, 1]")
    weight: NonNegativeFloat = Field(1.0, description="lambda: weight of the mutual-information terms")


class TranslatorSpec(StrictModel):
    """An image-to-image G (methods pix2pix, cyclegan, staged): a U-Net with skip connections
    (Ronneberger 2015, as pix2pix uses) or a residual net (as CycleGAN and SRGAN use)."""

    arch: Literal[TRANSLATOR_ARCHS] = "unet"
    base_channels: PositiveInt = 32
    blocks: PositiveInt = Field(4, description="resnet: residual blocks at full resolution")
    batch_norm: bool = True
    output: Literal[OUTPUT_NAMES] = "tanh"


class PatchSpec(StrictModel):
    """A PatchGAN D (Isola et al. 2017): one logit per overlapping patch, not one per image."""

    base_channels: PositiveInt = 32
    batch_norm: bool = True
    spectral_norm: bool = False


class ModelSpec(StrictModel):
    g: GeneratorSpec = Field(default_factory=GeneratorSpec)
    d: DiscriminatorSpec = Field(default_factory=DiscriminatorSpec)
    translator: TranslatorSpec = Field(default_factory=TranslatorSpec, description="pix2pix, cyclegan, staged")
    patch: PatchSpec = Field(default_factory=PatchSpec, description="pix2pix, cyclegan, staged: the PatchGAN D")
    conditional: bool = Field(False, description="class-conditional G and projection D")
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0, description="EMA of G's weights per round")
    ema_warmup: bool = Field(True, description="EMA decay min(ema_decay, (1 + t) / (10 + t)) at update t")
    codes: CodesSpec = Field(default_factory=CodesSpec, description="method infogan: the latent codes")


class LossSpec(StrictModel):
    name: Literal[LOSS_NAMES] = "nonsaturating"
    gp_weight: NonNegativeFloat = Field(10.0, description="wgan-gp: gradient penalty weight")
    clip: PositiveFloat = Field(0.01, description="wgan: D's weights clipped to [-clip, clip] after each update")
    r1_gamma: NonNegativeFloat = Field(0.0, description="R1: gamma/2 E|grad D(x)|^2 on reals (0: off)")
    r2_gamma: NonNegativeFloat = Field(0.0, description="R2: the same penalty on fakes (0: off)")
    reg_every: PositiveInt = Field(1, description="lazy R1/R2: every N critic updates, scaled by N")
    g_objective: Literal["adversarial", "feature-matching"] = Field(
        "adversarial", description="G's loss: the adversarial one, or matching D's mean features (Salimans 2016)")
    l1_weight: NonNegativeFloat = Field(100.0, description="pix2pix, staged: weight of L1 to the target (Isola: 100)")
    adversarial_weight: NonNegativeFloat = Field(
        1.0, description="pix2pix: weight of the cGAN term; 0 trains G on L1 alone, with no D (the paper's ablation)")
    cycle_weight: NonNegativeFloat = Field(10.0, description="cyclegan: weight of the cycle-consistency L1 (Zhu: 10)")
    identity_weight: NonNegativeFloat = Field(0.0, description="cyclegan: weight of the identity L1 (0: off)")


class AugmentSpec(StrictModel):
    """DiffAugment (Zhao et al. 2020): the same differentiable augmentation of reals and fakes,
    in D's and G's updates alike."""

    policy: str = Field("", description=f"comma-separated, of {', '.join(AUGMENT_POLICIES)}; empty: off")
    probability: float = Field(1.0, ge=0.0, le=1.0, description="share of samples augmented")

    @field_validator("policy")
    @classmethod
    def _known_policies(cls, policy: str) -> str:
        unknown = [p for p in (part.strip() for part in policy.split(",")) if p and p not in AUGMENT_POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown}; allowed: {', '.join(AUGMENT_POLICIES)}")
        return policy


class OptimizerSpec(StrictModel):
    name: Literal[OPTIMIZER_NAMES] = "adam"
    lr: PositiveFloat = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = 0.0

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(betas)}")
        return betas


class OptimSpec(StrictModel):
    g: OptimizerSpec = Field(default_factory=OptimizerSpec)
    d: OptimizerSpec = Field(default_factory=OptimizerSpec)
    decay: Literal[LR_DECAY_NAMES] = Field(
        "constant", description="both lrs over the run's rounds: kept, or falling to final_factor x lr "
                                "in a straight line or on a half cosine")
    final_factor: float = Field(0.0, ge=0.0, le=1.0, description="decay: the lrs' value at the last round, "
                                                                 "as a share of optim.g.lr and optim.d.lr")


class ScheduleSpec(StrictModel):
    d_steps: PositiveInt = Field(1, description="D updates per round")
    g_steps: PositiveInt = Field(1, description="G updates per round, after the D updates")
    batch_size: PositiveInt = Field(64, description="real samples per D update, per worker")
    g_batch_size: PositiveInt | None = Field(None, description="fakes per G update; default batch_size")
    max_rounds: PositiveInt | None = None
    max_steps: PositiveInt | None = Field(None, description="G updates in all; rounds = ceil(max_steps/g_steps)")
    seed: int = 0
    log_every_rounds: PositiveInt = 10
    on_divergence: Literal["stop", "rollback"] = Field(
        "stop", description="when the divergence guard fires: end the run, or reload the last good "
                            "checkpoint with lower lrs and go on")
    rollback_lr_factor: float = Field(0.5, gt=0.0, le=1.0, description="both lrs are multiplied by this at each rollback")
    max_rollbacks: PositiveInt = Field(3, description="rollbacks before a diverging run stops")

    @model_validator(mode="after")
    def _one_budget(self) -> ScheduleSpec:
        if (self.max_rounds is None) == (self.max_steps is None):
            raise ValueError("set exactly one of schedule.max_rounds and schedule.max_steps")
        return self

    @property
    def total_rounds(self) -> int:
        if self.max_rounds is not None:
            return self.max_rounds
        return -(-self.max_steps // self.g_steps)

    @property
    def fake_batch_size(self) -> int:
        return self.g_batch_size or self.batch_size


class StopSpec(StrictModel):
    """Which evals stopping rules end a run early; all given rules are combined with any-of."""

    two_sample_alpha: float | None = Field(None, gt=0.0, lt=1.0, description="stop when MMD p-value > alpha")
    patience: PositiveInt | None = Field(None, description="evaluations without improvement")
    patience_metric: str = "eval/fid"
    patience_mode: Literal["min", "max"] = "min"
    min_delta: NonNegativeFloat = 0.0
    divergence_guard: bool = True


class EvalSpec(StrictModel):
    every_rounds: PositiveInt | None = Field(None, description="evaluate every N rounds; none = at the end")
    num_samples: PositiveInt = Field(EVAL_NUM_SAMPLES, description="fakes (and reals) per evaluation, all workers")
    grid_size: PositiveInt = Field(64, description="images in the logged sample grid")
    metrics: list[Literal[EVAL_METRICS]] = Field(default_factory=list)
    features: Literal[FEATURE_KINDS] = "auto"
    featurizer_path: Path | None = Field(None, description="trained classifier weights (features: classifier)")
    inception_weights: Path | None = None
    mmd_permutations: PositiveInt = MMD_PERMUTATIONS
    kid_subsets: PositiveInt = Field(KID_SUBSETS, description="KID: random subsets averaged")
    kid_subset_size: PositiveInt = Field(KID_SUBSET_SIZE, description="KID: samples per subset, capped at the count")
    stop: StopSpec = Field(default_factory=StopSpec)


class CheckpointSpec(StrictModel):
    every_rounds: PositiveInt = 100
    keep: PositiveInt | None = Field(3, description="checkpoints kept; none keeps all")


class ScalingSpec(StrictModel):
    num_workers: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    max_failures: int = Field(0, ge=-1, description="worker-group restarts; -1 = unlimited")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast on GPU")
    compile: bool = Field(False, description="torch.compile every player (forward and backward) after DDP wraps it")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile's mode; reduce-overhead uses CUDA graphs on GPU")


class TrackingSpec(StrictModel):
    experiment: str | None = Field(None, description="MLflow experiment; default the job name")
    register_as: str | None = Field(None, description="registered model name for the generator")
    storage_path: Path = Field(Path("runs"), description="where run folders and checkpoints go")
    flush_timeout_s: NonNegativeFloat = Field(
        60.0, description="at the end, how long rank 0 waits for the tracking server to take what "
                          "it has not yet; the rest stays in the run folder for `zerosum sync`")


class JobSpec(StrictModel):
    name: str = Field(pattern=_NAME_PATTERN)
    description: str = ""
    method: Literal[METHOD_NAMES] = Field(
        "gan", description="gan, gmmn (G alone, MMD), mmd-gan, infogan, pix2pix, cyclegan, staged")
    data: DataSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec
    eval: EvalSpec = Field(default_factory=EvalSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @model_validator(mode="after")
    def _combinations_that_work(self) -> JobSpec:
        problem = combination_problem(self)
        if problem:
            raise ValueError(problem)
        return self


# The task each method trains on; every other method generates from z.
METHOD_TASKS = {"pix2pix": ("superres", "complete"), "cyclegan": ("unpaired",), "staged": ("superres",)}
# Losses a PatchGAN pair critic takes here: the per-patch forms of the GAN losses (no penalty).
TRANSLATION_LOSSES = ("minimax", "nonsaturating", "hinge", "lsgan")


def translation_problem(spec: JobSpec) -> str | None:
    """The first field that cannot go with the job's method and task; None if none."""
    method, data, model, loss = spec.method, spec.data, spec.model, spec.loss
    tasks = METHOD_TASKS.get(method, ("generate",))
    defaults = LossSpec()
    translates = method in TRANSLATION_METHODS
    metrics = set(spec.eval.metrics)
    shape = image_channels_and_side(data)
    side = shape[1] if shape else 0
    first_stage = side // data.factor
    first_stage_dcgan = method == "staged" and "dcgan" in (model.g.arch, model.d.arch)
    checks = [
        (first_stage_dcgan and data.task == "superres" and first_stage not in DCGAN_SIDES,
         f"data.factor: method staged's first stage is {first_stage}x{first_stage} at data.factor {data.factor}, "
         f"and arch dcgan builds sides {', '.join(map(str, DCGAN_SIDES))}; "
         f"allowed factors: {', '.join(str(side // s) for s in DCGAN_SIDES if s < side and side % s == 0)}"),
        (translates and (loss.r1_gamma, loss.r2_gamma, loss.reg_every) != (0.0, 0.0, 1),
         f"loss.r1_gamma / loss.r2_gamma / loss.reg_every: method {method}'s PatchGAN critics take no penalty"),
        (method in ("gan", "gmmn", "mmd-gan", "infogan")
         and (model.translator != TranslatorSpec() or model.patch != PatchSpec()),
         f"model.translator / model.patch: belong to methods pix2pix, cyclegan and staged (method: {method})"),
        ("ssim" in metrics and side and side < SSIM_MIN_SIDE,
         f"eval.metrics: ssim's {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} window needs images of side {SSIM_MIN_SIDE} or more "
         f"(data: {side}x{side}); use psnr"),
        (translates and spec.eval.num_samples < spec.scaling.num_workers,
         f"eval.num_samples: {spec.eval.num_samples} held-out inputs cannot be shared by "
         f"{spec.scaling.num_workers} workers (scaling.num_workers); at least one each"),
        (data.task not in tasks,
         f"data.task: method {method} trains on {' or '.join(tasks)} (got {data.task})"),
        (translates and (model.g != GeneratorSpec() or model.d != DiscriminatorSpec()),
         f"model.g / model.d: method {method}'s players are model.translator and model.patch; "
         "remove the model.g and model.d sections"),
        (method in METHOD_TASKS and loss.name not in TRANSLATION_LOSSES,
         f"loss.name: method {method}'s PatchGAN critics take {', '.join(TRANSLATION_LOSSES)} (got {loss.name})"),
        (method in METHOD_TASKS and (model.conditional or spec.augment.policy.strip() or model.d.pack > 1),
         f"model.conditional / augment / model.d.pack: not available with method {method}"),
        (method not in ("pix2pix", "staged") and loss.l1_weight != defaults.l1_weight,
         f"loss.l1_weight: L1 to a paired target belongs to methods pix2pix and staged (method: {method})"),
        (method != "pix2pix" and loss.adversarial_weight != defaults.adversarial_weight,
         f"loss.adversarial_weight: the L1-alone ablation belongs to method pix2pix (method: {method})"),
        (method != "cyclegan" and (loss.cycle_weight, loss.identity_weight)
         != (defaults.cycle_weight, defaults.identity_weight),
         f"loss.cycle_weight / loss.identity_weight: belong to method cyclegan (method: {method})"),
        (bool(metrics & {"psnr", "ssim"}) and not (translates and data.task in ("superres", "complete")),
         "eval.metrics: psnr and ssim compare outputs with paired targets; they need method pix2pix"),
        ("accuracy" in metrics and not translates,
         "eval.metrics: accuracy classifies translated inputs by their label; it needs method pix2pix or cyclegan"),
    ]
    return next((message for failed, message in checks if failed), None)


def combination_problem(spec: JobSpec) -> str | None:
    """The first combination of fields that cannot work, naming both fields; None if none."""
    model, loss, sched = spec.model, spec.loss, spec.schedule
    pack, method = model.d.pack, spec.method
    problem = streaming_problem(spec.data) or task_problem(spec.data) or translation_problem(spec)
    if problem:
        return problem
    checks = [
        # Compared with the defaults, not with the fields a user wrote: a resolved spec (what
        # Ray workers validate again) has every field set.
        (method == "gmmn" and model.d != DiscriminatorSpec(),
         "model.d: method gmmn trains G alone (MMD against the reals); remove the model.d section"),
        (method == "gmmn" and loss != LossSpec(),
         "loss: method gmmn has no critic, so no adversarial loss or penalty; remove the loss section"),
        (method == "infogan" and model.codes.categorical + model.codes.continuous == 0,
         "model.codes: method infogan needs model.codes.categorical or model.codes.continuous > 0"),
        (method != "infogan" and model.codes.categorical + model.codes.continuous > 0,
         f"model.codes: latent codes belong to method infogan (method: {method})"),
        (method == "infogan" and model.conditional,
         "model.conditional: method infogan learns its own categories; set model.conditional: false"),
        (sched.batch_size % pack != 0 or sched.fake_batch_size % pack != 0,
         f"model.d.pack: {pack} must divide schedule.batch_size ({sched.batch_size}) and the fake batch "
         f"(schedule.g_batch_size, {sched.fake_batch_size})"),
        (pack > 1 and method == "infogan",
         "model.d.pack: InfoGAN's Q predicts each sample's codes from D's features; packed features "
         "mix samples, so method infogan needs model.d.pack: 1"),
        (pack > 1 and model.conditional,
         "model.d.pack: packing concatenates samples of different classes; it cannot go with model.conditional"),
        (loss.name == "wgan" and (loss.r1_gamma > 0 or loss.r2_gamma > 0),
         "loss.r1_gamma / loss.r2_gamma: loss.name wgan bounds D by weight clipping; a gradient penalty "
         "is the other way (use rpgan, or wgan-gp)"),
        (loss.name == "rpgan" and sched.fake_batch_size != sched.batch_size,
         f"loss.name: rpgan pairs each real with a fake, so schedule.g_batch_size ({sched.fake_batch_size}) "
         f"must equal schedule.batch_size ({sched.batch_size})"),
        (loss.g_objective == "feature-matching" and method not in ("gan", "infogan"),
         f"loss.g_objective: feature matching reads a discriminator's features; method {method} has none"),
        (sched.on_divergence == "rollback" and not spec.eval.stop.divergence_guard,
         "schedule.on_divergence: rollback heals what the divergence guard detects; "
         "eval.stop.divergence_guard is false"),
        (sched.on_divergence == "rollback" and spec.eval.every_rounds is None,
         "schedule.on_divergence: rollback returns to the last evaluated checkpoint; set eval.every_rounds"),
        (spec.augment.policy.strip() != "" and DATASETS[spec.data.name].kind != "images",
         f"augment.policy: DiffAugment transforms images; data.name {spec.data.name} holds points"),
    ]
    return next((message for failed, message in checks if failed), None)


# --------------------------------------------------------------------------- loading


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with `safe_load`; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read spec ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a spec must be a YAML mapping, got {type(raw).__name__}")
    return raw


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: its problem and where (its own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_override(text: str) -> tuple[list[str], Any]:
    """`'optim.d.lr=1e-3'` -> (['optim', 'd', 'lr'], 0.001). Values are parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key.strip()):
        raise ConfigError(f"--set '{text}': expected dotted.path=value, e.g. optim.d.lr=1e-3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set '{text}': value is not valid YAML: {err}") from None
    return key.strip().split("."), parsed


def set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set raw[a][b][c] = value, creating mappings on the way; errors name the path."""
    node = raw
    for depth, key in enumerate(path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"{where}: is a {type(child).__name__}, cannot set {'.'.join(path)} inside it")
        node = child
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b=value` override applied in order."""
    merged = yaml.safe_load(yaml.safe_dump(raw))
    for text in overrides or []:
        path, value = parse_override(text)
        set_path(merged, path, value)
    return merged


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also through Optional), else None."""
    for candidate in [annotation, *getattr(annotation, "__args__", ())]:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def allowed_fields(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the sub-model at `path` (for 'unknown field' messages)."""
    for key in path:
        field = model.model_fields.get(str(key))
        model = model_of(getattr(field, "annotation", None))
        if model is None:
            return []
    return list(model.model_fields)


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel] = None) -> str:
    """`source: field.path: message (got value)`: one line for one problem (the usual case,
    and what the CLI's one `error:` line shows); several get a count, then one line each."""
    problems = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            allowed = allowed_fields(model or JobSpec, problem["loc"][:-1])
            message = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        got = problem.get("input")
        shown = "" if problem["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        # A check of the whole spec (combination_problem) names its fields in its message.
        problems.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return "\n".join([f"{source}: {len(problems)} problems in the spec"] + [f"  {p}" for p in problems])


def validate_job(raw: dict[str, Any], source: str = "spec", check_paths: bool = True) -> JobSpec:
    """Validate a raw mapping into a JobSpec, raising ConfigError with field paths."""
    try:
        spec = JobSpec.model_validate(raw, context={"check_paths": check_paths})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    return resolve_paths(spec)


def resolve_data_paths(data: DataSpec) -> DataSpec:
    """data.root (and data.source.root) made absolute."""
    updates: dict[str, Any] = {}
    if data.root is not None:
        updates["root"] = data.root.expanduser().resolve()
    if data.source is not None:
        updates["source"] = resolve_data_paths(data.source)
    return data.model_copy(update=updates)


def resolve_paths(spec: JobSpec) -> JobSpec:
    """Make relative paths absolute: Ray workers run in another working directory."""
    updates: dict[str, Any] = {"data": resolve_data_paths(spec.data)}
    tracking = spec.tracking.model_copy(update={"storage_path": spec.tracking.storage_path.expanduser().resolve()})
    updates["tracking"] = tracking
    evals = {k: getattr(spec.eval, k).expanduser().resolve()
             for k in ("featurizer_path", "inception_weights") if getattr(spec.eval, k) is not None}
    if evals:
        updates["eval"] = spec.eval.model_copy(update=evals)
    return spec.model_copy(update=updates)


def load_job(path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> JobSpec:
    """Load a job spec from YAML, apply `a.b=value` overrides, validate once.

    Raises ConfigError naming the file, the field path and what is allowed.
    """
    raw = apply_overrides(read_yaml(path), overrides)
    raw.pop("campaign", None)
    return validate_job(raw, source=str(path), check_paths=check_paths)


def job_to_dict(spec: JobSpec) -> dict[str, Any]:
    """The resolved spec as plain YAML-able values (paths as strings)."""
    return spec.model_dump(mode="json")


def job_to_yaml(spec: JobSpec) -> str:
    return yaml.safe_dump(job_to_dict(spec), sort_keys=False)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'g': {'lr': 1e-4}}} -> {'optim.g.lr': 1e-4}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
