"""Ray Tune's scheduler and searcher for a campaign: ASHA, PBT or FIFO; random, grid or Optuna."""

from __future__ import annotations

from typing import Any

from zerosum.tune.campaign import Campaign
from zerosum.tune.schema import AshaSpec, PbtSpec
from zerosum.tune.space import tune_domain


class ClipToBounds:
    """PBT's explore step multiplies by 0.8 or 1.2; keep the result inside the search bounds."""

    def __init__(self, bounds: dict[str, tuple[float, float]]):
        self.bounds = bounds

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (low, high) in self.bounds.items():
            if key in config:
                config[key] = type(config[key])(min(max(config[key], low), high))
        return config


def build_scheduler(campaign: Campaign):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    scheduler, space = campaign.spec.scheduler, campaign.spec.search_space
    if isinstance(scheduler, AshaSpec):
        return ASHAScheduler(time_attr="round", max_t=scheduler.max_rounds or campaign.total_rounds,
                             grace_period=scheduler.grace_rounds or campaign.base.eval.every_rounds,
                             reduction_factor=scheduler.reduction_factor, brackets=scheduler.brackets)
    if not isinstance(scheduler, PbtSpec):
        return None
    mutations, bounds = {}, {}
    for key in campaign.mutated_paths():
        domain = space[key]
        mutations[key] = list(domain.values) if domain.kind in ("choice", "grid") else tune_domain(domain, False)
        if domain.kind in ("uniform", "loguniform"):
            bounds[key] = (domain.values[0], domain.values[1])
        elif domain.kind == "randint":
            bounds[key] = (domain.values[0], domain.values[1] - 1)
    return PopulationBasedTraining(
        time_attr="round", perturbation_interval=scheduler.perturbation_interval_rounds,
        burn_in_period=scheduler.burn_in_rounds, hyperparam_mutations=mutations,
        quantile_fraction=scheduler.quantile_fraction, resample_probability=scheduler.resample_probability,
        custom_explore_fn=ClipToBounds(bounds), synch=scheduler.synch)


def build_searcher(campaign: Campaign):
    """Random/grid: Tune's variant generator (it limits concurrency itself); Optuna TPE:
    wrapped in a ConcurrencyLimiter."""
    search, limit = campaign.spec.search, campaign.spec.max_concurrent_trials
    if search.algorithm == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=search.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=limit) if limit else searcher
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=limit or 0, random_state=search.seed)
