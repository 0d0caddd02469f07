"""infra/ agrees with itself, with KubeRay and the Ray launcher, and with pyproject.toml's pins.

A version bump in pyproject.toml (or in any one manifest) fails here until every
Dockerfile, manifest, launcher config and doc names the same Ray, torch and MLflow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
K8S = INFRA / "k8s"
RAY_KINDS = ("RayCluster", "RayJob", "RayService")
TEXT_SUFFIXES = {".yaml", ".yml", ".md", ".sh", ".mlflow", ""}


def project_pins(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """{'zerosum': '0.1.0', 'ray': '2.60.0', 'torch': ..., 'torchvision': ..., 'mlflow': ...}."""
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = {re.split(r"[\[=<>~! ]", dep)[0]: dep.split("==")[1].strip()
            for dep in project["dependencies"] if "==" in dep}
    return {"zerosum": project["version"], **pins}


def expected_tags(pins: dict[str, str]) -> dict[str, set[str]]:
    """Image repository -> the tags infra may use for it."""
    base = f"{pins['zerosum']}-ray{pins['ray']}"
    return {"zerosum": {f"{base}-gpu", f"{base}-cpu"}, "zerosum-mlflow": {pins["mlflow"]}}


def infra_text_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and (p.suffix in TEXT_SUFFIXES
                                                                  or p.name.startswith("Dockerfile")))


def k8s_documents() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)", path.read_text(), re.MULTILINE))


# --------------------------------------------------------------------------- versions


def version_mismatches(pins: dict[str, str]) -> list[str]:
    """Every place in infra/ that names a version or image tag other than pyproject's."""
    problems = []
    args = dockerfile_args(INFRA / "docker" / "Dockerfile")
    for arg, package in (("RAY_VERSION", "ray"), ("TORCH_VERSION", "torch"),
                         ("TORCHVISION_VERSION", "torchvision"), ("MLFLOW_VERSION", "mlflow")):
        if args.get(arg) != pins[package]:
            problems.append(f"infra/docker/Dockerfile: ARG {arg}={args.get(arg)} but pyproject pins {package}=={pins[package]}")
    if dockerfile_args(INFRA / "docker" / "Dockerfile.mlflow").get("MLFLOW_VERSION") != pins["mlflow"]:
        problems.append(f"infra/docker/Dockerfile.mlflow: MLFLOW_VERSION is not {pins['mlflow']}")
    tags = expected_tags(pins)
    for path in infra_text_files():
        text = path.read_text()
        for repo, tag in re.findall(r"\b(zerosum(?:-mlflow)?):([\w.${}-]+)", text):
            # build.sh computes its tags from pyproject.toml ($ZEROSUM-ray$RAY).
            if "$" not in tag and tag not in tags[repo]:
                problems.append(f"{path.relative_to(REPO_ROOT)}: image {repo}:{tag}, expected one of {sorted(tags[repo])}")
        for tag in re.findall(r"rayproject/ray:([\w.-]+)", text):
            if not tag.startswith(f"{pins['ray']}-"):
                problems.append(f"{path.relative_to(REPO_ROOT)}: rayproject/ray:{tag} is not Ray {pins['ray']}")
    for path, doc in k8s_documents():
        spec = ray_cluster_spec(doc)
        if spec is not None and str(spec.get("rayVersion")) != pins["ray"]:
            problems.append(f"{path.name}: {doc['kind']} rayVersion {spec.get('rayVersion')} is not {pins['ray']}")
    return problems


def test_versions_and_image_tags_match_pyproject():
    assert version_mismatches(project_pins()) == []


def test_a_version_bump_in_one_place_fails_until_all_agree():
    bumped = {**project_pins(), "ray": "9.9.9", "mlflow": "9.9.9"}
    problems = "\n".join(version_mismatches(bumped))
    for place in ("infra/docker/Dockerfile:", "Dockerfile.mlflow", "40-raycluster.yaml", "60-rayjob-template.yaml",
                  "infra/ray/cluster.yaml", "30-mlflow.yaml"):
        assert place in problems


# --------------------------------------------------------------------------- KubeRay


def ray_cluster_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "RayCluster":
        return doc["spec"]
    if doc.get("kind") == "RayJob":
        return doc["spec"].get("rayClusterSpec")
    if doc.get("kind") == "RayService":
        return doc["spec"].get("rayClusterConfig")
    return None


def containers_of(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def gpu_limit(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_every_manifest_parses_and_names_its_namespace():
    docs = k8s_documents()
    assert {doc["kind"] for _, doc in docs} >= {"Namespace", "RayCluster", "RayJob", "Deployment", "Service",
                                                "StatefulSet", "NetworkPolicy", "PersistentVolumeClaim"}
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "zerosum", f"{path.name}: {doc['kind']} {doc['metadata']['name']}"
    for path in INFRA.rglob("*.y*ml"):
        list(yaml.safe_load_all(path.read_text()))


def test_every_ray_manifest_has_token_auth_and_the_fields_kuberay_requires():
    ray_docs = [(path, doc) for path, doc in k8s_documents() if doc["kind"] in RAY_KINDS]
    assert {doc["kind"] for _, doc in ray_docs} == {"RayCluster", "RayJob"}
    for path, doc in ray_docs:
        assert doc["apiVersion"] == "ray.io/v1", path.name
        spec = ray_cluster_spec(doc)
        assert spec["authOptions"]["mode"] == "token", f"{path.name}: authOptions.mode must be token"
        assert spec["authOptions"].get("secretName") == "zerosum-ray-token"
        head = spec["headGroupSpec"]
        assert isinstance(head["rayStartParams"], dict)
        assert containers_of(head)[0]["image"] and containers_of(head)[0]["name"]
        assert containers_of(head)[0]["image"].endswith("-cpu") and gpu_limit(containers_of(head)[0]) == 0
        for group in spec["workerGroupSpecs"]:
            assert group["groupName"] and isinstance(group["rayStartParams"], dict)
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
            assert containers_of(group)[0]["image"] and containers_of(group)[0]["name"]


def test_the_raycluster_autoscales_a_gpu_worker_group():
    (cluster,) = [doc for _, doc in k8s_documents() if doc["kind"] == "RayCluster"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    gpu_groups = [g for g in cluster["spec"]["workerGroupSpecs"] if gpu_limit(containers_of(g)[0]) >= 1]
    assert gpu_groups and all(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups)
    assert all(containers_of(g)[0]["image"].endswith("-gpu") for g in gpu_groups)


def test_the_rayjob_runs_a_valid_zerosum_spec_from_its_configmap():
    from zerosum.config import validate_job

    docs = [doc for path, doc in k8s_documents() if path.name == "60-rayjob-template.yaml"]
    (job,) = [doc for doc in docs if doc["kind"] == "RayJob"]
    configmaps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ConfigMap"}
    entry = job["spec"]["entrypoint"].split()
    assert entry[:4] == ["python", "-m", "zerosum.cli", "run"] and job["spec"]["entrypointNumCpus"] >= 1
    head_pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head_pod["containers"][0]["volumeMounts"]}
    (volume,) = [v for v in head_pod["volumes"] if "configMap" in v]
    spec_path = Path(entry[4])
    assert str(spec_path.parent) == mounts[volume["name"]]
    raw = yaml.safe_load(configmaps[volume["configMap"]["name"]]["data"][spec_path.name])
    spec = validate_job(raw, source="60-rayjob-template.yaml", check_paths=False)
    assert spec.scaling.use_gpu and str(spec.tracking.storage_path).startswith("/mnt/zerosum")


def test_mlflow_server_has_postgres_s3_served_artifacts_and_basic_auth():
    docs = k8s_documents()
    (deployment,) = [doc for _, doc in docs if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "mlflow"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = " ".join(container["args"])
    for flag in ("--serve-artifacts", "--app-name=basic-auth", "--backend-store-uri=postgresql://",
                 "--artifacts-destination=s3://", "--allowed-hosts="):
        assert flag in args
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and "MLFLOW_AUTH_CONFIG_PATH" in env
    (service,) = [doc for _, doc in docs if doc["kind"] == "Service" and doc["metadata"]["name"] == "mlflow"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_nothing_is_published_outside_the_cluster():
    for path, doc in k8s_documents():
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{path.name}: {doc['metadata']['name']}"
        spec = ray_cluster_spec(doc)
        if spec is not None:
            assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", path.name
        assert doc["kind"] != "Ingress", f"{path.name}: no Ingress without auth and TLS in front"


def test_every_secret_the_manifests_read_is_documented():
    example = {doc["metadata"]["name"]: set(doc["stringData"])
               for doc in yaml.safe_load_all((K8S / "10-secrets.example.yaml").read_text())}
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml") if p.name != "10-secrets.example.yaml")
    for name, key in re.findall(r"secretKeyRef: \{name: ([\w-]+), key: (\w+)\}", text):
        assert key in example.get(name, set()), f"secret {name} key {key}"
    for name in re.findall(r"(?:secretName|name): (zerosum-[\w-]+)", text):
        if name.startswith(("zerosum-ray-token", "zerosum-postgres", "zerosum-s3", "zerosum-mlflow-")):
            assert name in example, name


# --------------------------------------------------------------------------- Ray launcher, docker, local


def test_the_launcher_config_passes_rays_own_validation_and_keeps_auth_on():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    head_start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert any("auth_token" in target for target in config["file_mounts"])
    gpu_types = [t for t in config["available_node_types"].values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] > t.get("min_workers", 0) for t in gpu_types)
    assert config["docker"]["image"].endswith("-gpu") and config["docker"]["head_image"].endswith("-cpu")


def test_the_images_keep_token_auth_on_and_install_zerosum_without_the_repo_root():
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-\$\{VARIANT\}$", dockerfile, re.MULTILINE)
    assert "RAY_AUTH_MODE=token" in dockerfile and "pip install -e" not in dockerfile
    assert "COPY --chown=ray:users platform/ platform/" in dockerfile
    assert "mlflow[auth]==${MLFLOW_VERSION}" in (INFRA / "docker" / "Dockerfile.mlflow").read_text()


def test_the_local_scripts_bind_loopback_with_token_auth():
    start = (INFRA / "local" / "start.sh").read_text()
    for needle in ("--dashboard-host 127.0.0.1", "export RAY_AUTH_MODE=token", "--host 127.0.0.1", "--workers 1",
                   "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false", "sqlite:///", "--artifacts-destination"):
        assert needle in start
    assert "ray stop" not in (INFRA / "local" / "stop.sh").read_text()  # it would stop every Ray on the machine
