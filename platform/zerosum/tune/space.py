"""The search space of a campaign: dotted job-schema paths and their Tune domains.

`optim.*.lr` names every field it matches (`*` ties G and D to one value);
`resolve_search_path` turns a key into the concrete paths it sets, or a ConfigError
naming the fields allowed where it went wrong. `param_space` builds Ray Tune's
domains from the campaign's `{kind: values}` entries.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from zerosum.config import JobSpec, model_of, set_path
from zerosum.errors import ConfigError
from zerosum.tune.schema import CampaignSpec, DomainSpec


def expand_path(model: type[BaseModel], parts: list[str]) -> list[list[str]]:
    """All concrete field paths that `parts` (with '*' wildcards) names under `model`."""
    if not parts:
        return [[]]
    head, rest = parts[0], parts[1:]
    names = list(model.model_fields) if head == "*" else [head]
    found: list[list[str]] = []
    for name in names:
        if name not in model.model_fields:
            continue
        child = model_of(model.model_fields[name].annotation)
        if not rest:
            found.append([name])
        elif child is not None:
            found.extend([name, *tail] for tail in expand_path(child, rest))
    return found


def resolve_search_path(key: str, source: str) -> list[list[str]]:
    """'optim.*.lr' -> [['optim', 'g', 'lr'], ['optim', 'd', 'lr']]; an unknown path is a
    ConfigError that names it and the fields allowed where it went wrong."""
    parts = key.split(".")
    targets = expand_path(JobSpec, parts)
    if targets:
        return targets
    model, walked = JobSpec, []
    for index, part in enumerate(parts):
        if part == "*" or part not in model.model_fields:
            break
        walked.append(part)
        child = model_of(model.model_fields[part].annotation)
        if child is None:
            if index < len(parts) - 1:
                raise ConfigError(f"{source}: campaign.search_space.{key}: {'.'.join(walked)} is a value, "
                                  f"not a section of the job schema")
            break
        model = child
    where = ".".join(walked) or "the top level"
    raise ConfigError(f"{source}: campaign.search_space.{key}: no such field in the job schema "
                      f"(fields under {where}: {', '.join(model.model_fields)})")


def set_targets(job: dict[str, Any], targets: list[list[str]], value: Any) -> None:
    """Set `value` at every target path of a (plain, resolved) job dict, in place."""
    for target in targets:
        set_path(job, target, copy.deepcopy(value))


def tune_domain(domain: DomainSpec, as_grid: bool):
    from ray import tune

    if domain.kind == "grid" or (as_grid and domain.kind == "choice"):
        return tune.grid_search(list(domain.values))
    build = {"choice": lambda v: tune.choice(list(v)), "uniform": lambda v: tune.uniform(*v),
             "loguniform": lambda v: tune.loguniform(*v), "randint": lambda v: tune.randint(*v)}
    return build[domain.kind](domain.values)


def param_space(spec: CampaignSpec) -> dict[str, Any]:
    """{search path: Tune domain}; under search.algorithm grid, choices become grids."""
    as_grid = spec.search.algorithm == "grid"
    return {key: tune_domain(domain, as_grid) for key, domain in spec.search_space.items()}
