"""Every row of docs/errors.md: bad input to a command is one `error:` line, exit status 2,
no traceback.

The rows are read from the Markdown table, so the documentation and the test cannot
drift apart. Each row's case id names the fixture that builds its input (`case_<id>`,
dashes as underscores) in the folder the command runs in. Commands run in this process
(`zerosum.cli.main`), which is what keeps some thirty of them within seconds: no Ray
cluster starts and nothing trains.
"""

from __future__ import annotations

import errno
import logging
import shlex
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from zerosum.cli import main
from zerosum_testing import REPO_ROOT

TABLE = REPO_ROOT / "docs" / "errors.md"
HEADER = ["case", "command", "input", "first line of stderr"]
# Where a message shows the absolute path of the folder the command ran in.
TMP = "{tmp}"
# The port `ui-port-in-use` occupies (its row names it).
BUSY_PORT = 5000
# A pix2pix job on the 8x8 digits: 4x4 inputs (area-downsampled by 2) -> 8x8.
SUPERRES_JOB = {"name": "superres-digits", "method": "pix2pix", "data": {"name": "digits", "task": "superres",
                                                                         "factor": 2},
                "model": {"translator": {"base_channels": 4}, "patch": {"base_channels": 4}},
                "schedule": {"batch_size": 16, "max_rounds": 2}}
RING8_JOB = {
    "name": "ring8-small",
    "data": {"name": "ring8", "num_samples": 1000},
    "model": {"g": {"arch": "mlp", "z_dim": 4, "hidden": [16], "output": "identity", "batch_norm": False},
              "d": {"arch": "mlp", "hidden": [16], "batch_norm": False}},
    "schedule": {"batch_size": 32, "max_rounds": 100},
    "eval": {"every_rounds": 10, "num_samples": 200, "metrics": ["modes"]},
}


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    case: str
    command: str
    input: str
    first_line: str


def unquote(cell: str) -> str:
    """A table cell's text without its code span (`x`, or ``x`` when x holds a backtick)."""
    cell = cell.strip()
    for fence in ("``", "`"):
        if len(cell) > 2 * len(fence) and cell.startswith(fence) and cell.endswith(fence):
            return cell[len(fence):-len(fence)].strip()
    return cell


def table_rows(text: str) -> list[Row]:
    """The rows of the one table whose header is HEADER; a malformed row is an error."""
    lines = [line.strip() for line in text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("|")
              and [c.strip() for c in line.strip("|").split("|")] == HEADER]
    assert len(starts) == 1, f"{TABLE}: expected one table headed {HEADER}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        cells = line.strip("|").split("|")
        assert len(cells) == len(HEADER), f"{TABLE}: {len(cells)} cells (a '|' inside one?): {line}"
        rows.append(Row(*(unquote(c) for c in cells)))
    return rows


ROWS = table_rows(TABLE.read_text())


def fixture_name(case: str) -> str:
    return "case_" + case.replace("-", "_")


def test_table_cases_are_unique_and_each_has_a_fixture():
    cases = [row.case for row in ROWS]
    assert len(cases) == len(set(cases)), "duplicate case ids"
    fixtures = {name for name in globals() if name.startswith("case_")}
    assert fixtures == {fixture_name(c) for c in cases}, "a case without a fixture, or a fixture without a row"
    assert all(row.command.startswith("zerosum ") and row.first_line.startswith("error: ") for row in ROWS)


# --------------------------------------------------------------------------- running a row


def run_main(argv: list[str]) -> int:
    """`zerosum ARGV` in this process: main's return code, or argparse's SystemExit code."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch):
    """As `zerosum` does before MLflow is imported: its INFO lines (creating a store's tables)
    are about MLflow. Here MLflow may be imported already, so its loggers are set directly."""
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.mark.parametrize("row", ROWS, ids=[row.case for row in ROWS])
def test_bad_input_is_one_error_line(row, request, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    request.getfixturevalue(fixture_name(row.case))
    capsys.readouterr()  # what building the input printed (a module fixture's first use) is not the command's
    argv = [arg.replace(TMP, str(tmp_path)) for arg in shlex.split(row.command)[1:]]

    code = run_main(argv)

    out = capsys.readouterr()
    err = out.err.replace(str(tmp_path.resolve()), TMP).replace(str(tmp_path), TMP)
    assert "Traceback" not in out.out + out.err
    assert code == 2, f"exit status {code}; stderr:\n{out.err}"
    assert err.splitlines() == [row.first_line], f"stderr is not the table's one line:\n{out.err}"


# --------------------------------------------------------------------------- inputs


def write_pngs(folder: Path, sizes: list[tuple[int, int]]) -> None:
    """Grey PNGs named a.png, b.png, ... of the given (width, height)."""
    folder.mkdir()
    for name, (width, height) in zip("abcdefgh", sizes):
        Image.fromarray(np.full((height, width), 128, dtype=np.uint8)).save(folder / f"{name}.png")


def write_yaml(path: Path, content: dict) -> None:
    path.write_text(yaml.safe_dump(content, sort_keys=False))


@pytest.fixture
def image_folders(tmp_path):
    """reals/ and fakes/: four 8x8 PNGs each, a pair eval would score."""
    write_pngs(tmp_path / "reals", [(8, 8)] * 4)
    write_pngs(tmp_path / "fakes", [(8, 8)] * 4)


@pytest.fixture
def ring8_job(tmp_path):
    write_yaml(tmp_path / "ring8.yaml", RING8_JOB)


def write_campaign(folder: Path, name: str, **changes) -> None:
    """A campaign file over ring8_job's base.yaml (as tests/tune/test_campaign.py writes them)."""
    write_yaml(folder / "base.yaml", RING8_JOB)
    campaign = {"base": "base.yaml", "search_space": {"optim.d.lr": {"loguniform": [1.0e-5, 1.0e-2]}},
                "objective": {"metric": "eval/modes", "mode": "max"}, **changes}
    write_yaml(folder / name, {"campaign": campaign})


def inference_is_not_run(*args, **kwargs):
    raise AssertionError("MLflow inferred a logged generator's pip requirements (a subprocess per model)")


@pytest.fixture(scope="module")
def generators(tmp_path_factory, empty_mlflow_store) -> str:
    """A store holding two untrained ring8 generators and a translator, logged as training
    would log them: models:/cond-ring8@candidate (conditional, 8 classes),
    models:/plain-ring8@candidate and models:/superres-digits@candidate (SUPERRES_JOB).
    Returns the store's URI."""
    import mlflow.models

    from zerosum import tracking
    from zerosum.config import validate_job
    from zerosum.data import describe_dataset
    from zerosum.methods import method_for
    from zerosum.serving import log_checkpoint_generator
    from zerosum.train.build import build_generator_for

    folder = tmp_path_factory.mktemp("generators")
    shutil.copyfile(empty_mlflow_store, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # the store's artifacts go to ./mlruns
        # No requirement inference runs: tracking.log_generator names torch itself.
        patch.setattr(mlflow.models, "infer_pip_requirements", inference_is_not_run)
        for name, conditional in (("cond-ring8", True), ("plain-ring8", False)):
            spec = validate_job({**RING8_JOB, "name": name, "model": {**RING8_JOB["model"], "conditional": conditional}})
            generator = build_generator_for(spec, *describe_dataset(spec.data))
            run = tracking.TrackedRun.start(uri, "errors-table", name, {}, "")
            log_checkpoint_generator(spec, {"players": {"g": generator.state_dict()}}, run, name, "candidate")
            run.end()
        spec = validate_job(SUPERRES_JOB)
        players = method_for(spec).build(*describe_dataset(spec.data))
        run = tracking.TrackedRun.start(uri, "errors-table", spec.name, {}, "")
        log_checkpoint_generator(spec, {"players": {"g": players["g"].state_dict()}}, run, spec.name, "candidate")
        run.end()
    return uri


@pytest.fixture
def logged_generators(generators, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", generators)


@pytest.fixture
def case_eval_empty_folder(tmp_path, image_folders):
    (tmp_path / "empty").mkdir()


@pytest.fixture
def case_eval_no_images(tmp_path, image_folders):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image\n")
    (tmp_path / "notes" / "b.csv").write_text("x,y\n1,2\n")


@pytest.fixture
def case_eval_not_an_image(tmp_path, image_folders):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_text("not a PNG\n")


@pytest.fixture
def case_eval_mixed_sizes(tmp_path, image_folders):
    write_pngs(tmp_path / "mixed", [(8, 8), (16, 16)])


@pytest.fixture
def case_eval_fake_mixed_sizes(tmp_path, image_folders):
    write_pngs(tmp_path / "mixed", [(8, 8), (16, 16)])


@pytest.fixture
def case_eval_not_square(tmp_path, image_folders):
    write_pngs(tmp_path / "wide", [(16, 8)])


@pytest.fixture
def case_eval_fake_empty(tmp_path, image_folders):
    (tmp_path / "empty").mkdir()


@pytest.fixture
def case_eval_no_such_fake(image_folders):
    pass


@pytest.fixture
def case_eval_unknown_model(image_folders, empty_store_in_tmp_path):
    pass


@pytest.fixture
def case_eval_classes_without_labels(image_folders):
    pass


@pytest.fixture
def case_eval_classes_on_points(image_folders, ring8_job):
    pass


@pytest.fixture
def case_eval_classifier_without_labels(image_folders):
    pass


@pytest.fixture
def case_eval_modes_without_mixture(image_folders):
    pass


@pytest.fixture
def case_eval_unknown_metric(image_folders):
    pass


@pytest.fixture
def case_eval_zero_samples(image_folders):
    pass


@pytest.fixture
def case_sample_unknown_model(empty_store_in_tmp_path):
    pass


@pytest.fixture
def case_sample_not_a_uri():
    pass


@pytest.fixture
def case_sample_label_out_of_range(logged_generators):
    pass


@pytest.fixture
def case_sample_label_unconditional(logged_generators):
    pass


@pytest.fixture
def case_sample_code_not_infogan(logged_generators):
    pass


@pytest.fixture
def case_sample_zero(logged_generators):
    pass


@pytest.fixture
def case_tune_objective_not_computed(tmp_path):
    write_campaign(tmp_path, "fid.yaml", objective={"metric": "eval/fid", "mode": "min"})


@pytest.fixture
def case_tune_objective_unknown(tmp_path):
    write_campaign(tmp_path, "typo.yaml", objective={"metric": "eval/fdi", "mode": "min"})


@pytest.fixture
def case_tune_empty_search_space(tmp_path):
    write_campaign(tmp_path, "empty.yaml", search_space={})


@pytest.fixture
def case_tune_not_a_campaign(tmp_path):
    write_yaml(tmp_path / "base.yaml", RING8_JOB)


@pytest.fixture
def case_tune_streaming_no_spare_cpu(tmp_path, monkeypatch, empty_store_in_tmp_path):
    """A campaign of 2 single-process trials over a job that streams a folder of PNGs, and Ray
    stood in for: `init_ray` does nothing and the cluster has 2 CPUs, which the trials fill."""
    import ray

    import zerosum.runtime

    write_pngs(tmp_path / "pngs", [(8, 8)] * 4)
    write_yaml(tmp_path / "base.yaml", {
        "name": "streamed-folder", "data": {"name": "folder", "root": "pngs", "image_size": 8, "channels": 1,
                                            "streaming": True},
        "model": {"g": {"arch": "dcgan", "z_dim": 4, "base_channels": 4}, "d": {"arch": "dcgan", "base_channels": 4}},
        "schedule": {"batch_size": 2, "max_rounds": 4},
        "eval": {"every_rounds": 2, "num_samples": 4, "metrics": ["mmd"], "features": "identity"}})
    write_yaml(tmp_path / "stream.yaml", {"campaign": {
        "base": "base.yaml", "search_space": {"optim.d.lr": {"choice": [1.0e-4, 2.0e-4]}},
        "objective": {"metric": "eval/mmd2", "mode": "min"}, "num_samples": 2}})
    monkeypatch.setattr(zerosum.runtime, "init_ray", lambda **kwargs: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})


def write_suite(folder: Path, name: str, data: str, row: dict) -> None:
    """A benchmark suite of one row, measured on `data` (as tests/benchmark writes them)."""
    protocol = {"kind": "mixture", "data": data, "num_samples": 100, "source": "fjxmlzn/PacGAN"}
    write_yaml(folder / name, {"suite": {"protocol": protocol, "seeds": [10, 11], "rows": [row]}})


@pytest.fixture
def case_benchmark_no_such_suite(tmp_path):
    pass  # nothing is written: ring9.yaml is not there


@pytest.fixture
def case_benchmark_row_on_other_data(ring8_job, tmp_path):
    write_suite(tmp_path, "grid.yaml", "grid25", {"name": "gan", "job": "ring8.yaml"})


@pytest.fixture
def case_benchmark_tuned_on_a_reported_seed(tmp_path):
    write_campaign(tmp_path, "tune.yaml", search_space={"schedule.seed": {"choice": [0, 10]}})
    write_suite(tmp_path, "seeds.yaml", "ring8", {"name": "gan (tuned)", "job": "base.yaml", "tune": "tune.yaml"})


@pytest.fixture
def case_benchmark_no_such_row(ring8_job, tmp_path):
    write_suite(tmp_path, "ring.yaml", "ring8", {"name": "gan", "job": "ring8.yaml"})


@pytest.fixture
def case_benchmark_broken_record(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ring-1.json").write_text('{"suite": "ring"}')


@pytest.fixture
def case_submit_no_such_spec(ring8_job):
    pass  # ring8.yaml is there; ring8.yml is not


@pytest.fixture
def case_submit_relative_data_root(ring8_job):
    pass


@pytest.fixture
def case_submit_tracking_server_down(ring8_job):
    pass  # port 9 (discard) has no listener here; the row's --address is never contacted


@pytest.fixture
def case_run_no_such_spec(ring8_job):
    pass  # ring8.yaml is there; ring8.yml is not


@pytest.fixture
def case_run_resume_without_run(ring8_job):
    pass


@pytest.fixture
def case_validate_unknown_field(tmp_path):
    write_yaml(tmp_path / "typo.yaml", {**RING8_JOB, "model": {**RING8_JOB["model"], "g": {"z_dmi": 3}}})


@pytest.fixture
def case_validate_streaming_points(tmp_path):
    write_yaml(tmp_path / "stream.yaml", {**RING8_JOB, "data": {**RING8_JOB["data"], "streaming": True}})


@pytest.fixture
def case_validate_wrong_type(tmp_path):
    write_yaml(tmp_path / "big.yaml", {**RING8_JOB, "schedule": {"batch_size": "big", "max_rounds": 100}})


@pytest.fixture
def case_validate_not_yaml(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [x\n")


@pytest.fixture
def case_validate_bad_set(ring8_job):
    pass


@pytest.fixture
def case_ui_port_in_use():
    """Something listening on 127.0.0.1:BUSY_PORT. If something else holds the port already,
    the command meets the same refusal, so that counts as ready too."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", BUSY_PORT))
        listener.listen()
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
    yield
    listener.close()


@pytest.fixture
def case_ui_port_out_of_range():
    pass


@pytest.fixture
def case_featurizer_no_root():
    pass


@pytest.fixture
def case_featurizer_root_not_a_folder():
    pass


@pytest.fixture
def case_validate_superres_factor(tmp_path):
    write_yaml(tmp_path / "superres.yaml", {**SUPERRES_JOB, "data": {**SUPERRES_JOB["data"], "factor": 3}})


@pytest.fixture
def case_validate_cyclegan_channels(tmp_path):
    write_pngs(tmp_path / "rgb", [(8, 8)] * 2)
    write_yaml(tmp_path / "cyclegan.yaml", {
        "name": "to-rgb", "method": "cyclegan", "schedule": {"max_rounds": 2},
        "data": {"name": "folder", "root": "rgb", "image_size": 8, "channels": 3, "task": "unpaired",
                 "source": {"name": "digits"}}})


@pytest.fixture
def case_translate_wrong_size(tmp_path, logged_generators):
    write_pngs(tmp_path / "big", [(16, 16)] * 2)


@pytest.fixture
def case_translate_not_a_translator(image_folders, logged_generators):
    pass


@pytest.fixture
def case_translate_neither_folder_nor_spec(tmp_path, logged_generators):
    (tmp_path / "notes.txt").write_text("not images\n")


@pytest.fixture
def case_sample_a_translator(logged_generators):
    pass


@pytest.fixture
def case_eval_a_translator(image_folders, logged_generators):
    pass


def test_a_reader_that_went_away_is_no_traceback(tmp_path):
    """`zerosum validate SPEC | head -1`: the pipe's reader is gone before zerosum writes (its
    end is closed before the command starts), so every write fails with EPIPE."""
    import os
    import subprocess
    import sys

    write_yaml(tmp_path / "ring8.yaml", RING8_JOB)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "zerosum.cli", "validate", "ring8.yaml"], cwd=tmp_path,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
