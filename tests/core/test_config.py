"""Job specs: overrides, resolution and errors that name the field."""

from pathlib import Path

import pytest
import yaml

from zerosum.config import flatten, job_to_dict, load_job, parse_override
from zerosum.errors import ConfigError
from zerosum_testing import JOBS, run_cli


def write_spec(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((JOBS / "digits-dcgan.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_digits_job_loads_and_resolves_paths():
    spec = load_job(JOBS / "digits-dcgan.yaml")
    assert spec.scaling.num_workers == 2
    assert spec.tracking.storage_path.is_absolute()


def test_every_job_in_jobs_folder_validates():
    for path in sorted(JOBS.glob("*.yaml")):
        if "campaign" in yaml.safe_load(path.read_text()):
            continue
        load_job(path)


def test_overrides_are_parsed_as_yaml_and_applied():
    spec = load_job(JOBS / "digits-dcgan.yaml", ["optim.d.lr=1e-3", "schedule.d_steps=3", "optim.g.betas=[0.0, 0.9]"])
    # Exact: the text 1e-3 parses to the correctly rounded double, the literal's; approx's default
    # rel=1e-6 would pass a float32 round trip (4.7e-8 off).
    assert spec.optim.d.lr == 1e-3
    assert spec.schedule.d_steps == 3
    assert spec.optim.g.betas == (0.0, 0.9)


@pytest.mark.parametrize("text", ["nodots", "=3", "a..b=1"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


@pytest.mark.parametrize(
    "overrides, field, hint",
    [
        (["model.g.widht=3"], "model.g.widht", "unknown field; allowed: arch, z_dim"),
        (["schedule.d_steps=two"], "schedule.d_steps", "integer"),
        (["optim.d.lr=-0.1"], "optim.d.lr", "greater than 0"),
        (["loss.name=wasserstein"], "loss.name", "'hinge'"),
        (["optim.g.betas=[0.5, 1.5]"], "optim.g.betas", "[0, 1)"),
        (["schedule.max_steps=10"], "schedule", "exactly one"),
        (["data.name=mnist", "data.root=/no/such/folder"], "data", "/no/such/folder"),
    ],
)
def test_bad_spec_names_the_field(overrides, field, hint):
    with pytest.raises(ConfigError) as err:
        load_job(JOBS / "digits-dcgan.yaml", overrides)
    message = str(err.value)
    assert f": {field}: " in message and hint in message, message


def test_missing_data_root_for_mnist(tmp_path):
    path = write_spec(tmp_path, data={"name": "mnist"})
    with pytest.raises(ConfigError, match="data: data.root is required"):
        load_job(path)


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_job(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_job(tmp_path / "list.yaml")


def test_yaml_tags_are_not_executed(tmp_path):
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job(tmp_path / "evil.yaml")


def test_flatten_gives_dotted_params():
    flat = flatten(job_to_dict(load_job(JOBS / "digits-dcgan.yaml")))
    # Exact: the YAML's 2.0e-4 parses to the same correctly rounded double as the literal 2e-4.
    assert flat["optim.g.lr"] == 2e-4
    assert flat["model.g.arch"] == "dcgan"


def test_cli_reports_config_error_without_traceback(tmp_path):
    out = run_cli("validate", str(JOBS / "digits-dcgan.yaml"), "--set", "optim.d.lr=-1", cwd=tmp_path)
    assert out.returncode == 2
    assert "optim.d.lr" in out.stderr and "greater than 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_dry_run_prints_resolved_config(tmp_path):
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), "--dry-run", "--set", "schedule.d_steps=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["schedule"]["d_steps"] == 2


@pytest.mark.parametrize("overrides, fields", [
    (["model.d.pack=3"], ["model.d.pack", "schedule.batch_size"]),
    (["model.d.pack=2", "model.conditional=true"], ["model.d.pack", "model.conditional"]),
    (["loss.name=wgan", "loss.r1_gamma=1"], ["loss.r1_gamma", "loss.name wgan"]),
    (["loss.name=rpgan", "schedule.g_batch_size=16"], ["loss.name", "schedule.g_batch_size"]),
    (["method=infogan"], ["model.codes", "method infogan"]),
    (["model.codes.categorical=10"], ["model.codes", "method: gan"]),
    (["method=gmmn"], ["model.d", "method gmmn"]),
    (["method=mmd-gan", "loss.g_objective=feature-matching"], ["loss.g_objective", "method mmd-gan"]),
    (["data.name=ring8", "augment.policy=color"], ["augment.policy", "data.name ring8"]),
    (["augment.policy=color,blur"], ["augment.policy", "blur"]),
])
def test_combinations_that_cannot_work_name_both_fields(overrides, fields):
    with pytest.raises(ConfigError) as caught:
        load_job(JOBS / "digits-dcgan.yaml", overrides)
    assert all(field in str(caught.value) for field in fields), str(caught.value)
