"""docs/results.md from the kept records: each row from the newest run that trained it, the
runs it draws on, a section per protocol, the hand-kept earlier tables after their suite."""

import json
from dataclasses import asdict

import pytest
import yaml

from zerosum.benchmark.page import earlier_sections, import_runs, load_records, merge_runs, results_page
from zerosum.benchmark.results import RowResult, SeedResult, SuiteResult
from zerosum.errors import ConfigError

# As a record holds it: the suite file's protocol with its defaults (threshold_std).
PROTOCOL = {"kind": "mixture", "data": "ring8-pacgan", "num_samples": 2500, "threshold_std": 3.0, "source": "PacGAN"}


def row(name: str, modes: list[float], kind: str = "zerosum") -> RowResult:
    """A row whose seeds 10, 11, ... reached `modes` (HQ and KL fixed: only modes is read)."""
    seeds = [SeedResult(10 + i, {"modes": m, "hq_fraction": 0.5, "kl": 0.1}) for i, m in enumerate(modes)]
    return RowResult(name, kind, seeds, {"job": "/x/jobs/ring.yaml", "set": []} if kind == "zerosum" else {})


def run(started_at: float, rows: list[RowResult], protocol=PROTOCOL, commit="abc1234") -> SuiteResult:
    meta = {"commit": commit, "machine": "cpu: test, 2 cores", "seeds": [10, 11], "started_at": started_at,
            "wall_s": 600.0, "command": f"zerosum benchmark ring.yaml  # {commit}", "description": "a ring",
            "protocol_source": "PacGAN", "notes": ["one note"]}
    return SuiteResult("ring", f"/runs/ring-{int(started_at)}", dict(protocol), rows, meta)


OLDER = run(100.0, [row("real data", [8, 8], "real"), row("gan", [5, 7]), row("pacgan2", [6, 6])], commit="old0000")
NEWER = run(200.0, [row("real data", [8, 8], "real"), row("pacgan2", [8, 8])], commit="new0000")


def test_each_row_comes_from_the_newest_run_that_trained_it():
    table = merge_runs([OLDER, NEWER], order=["gan", "pacgan2"])
    assert [r.meta["commit"] for r in table.runs] == ["new0000", "old0000"]
    # (row, its run's index in table.runs): the real row and pacgan2 from the newer run.
    assert [(r.name, i, [s.metrics["modes"] for s in r.seeds]) for r, i in table.rows] == [
        ("real data", 0, [8, 8]), ("gan", 1, [5, 7]), ("pacgan2", 0, [8, 8])]


def test_a_run_no_row_comes_from_is_left_out():
    table = merge_runs([OLDER, run(300.0, [row("real data", [8, 8], "real"), row("gan", [8, 8]),
                                           row("pacgan2", [8, 8])], commit="all0000")], order=[])
    assert [r.meta["commit"] for r in table.runs] == ["all0000"]


def test_a_row_trained_with_the_commands_overrides_stands_apart():
    smoke = row("pacgan2", [3, 3])
    smoke.provenance["command_set"] = ["schedule.max_rounds=200"]
    table = merge_runs([OLDER, NEWER, run(300.0, [smoke])], order=["gan", "pacgan2"])
    assert [(r.name, i) for r, i in table.rows] == [
        ("real data", 1), ("gan", 2), ("pacgan2", 1), ("pacgan2 (with schedule.max_rounds=200)", 0)]


def test_the_page_names_each_rows_run(tmp_path):
    page = results_page([OLDER, NEWER], tmp_path)
    assert "## ring\n" in page
    assert "- run 1: made 1970-01-01 at commit `new0000`" in page and "; rows: pacgan2." in page
    assert "- run 2: made 1970-01-01 at commit `old0000`" in page and "; rows: gan." in page
    # gan's modes, (5 + 7) / 2 = 6 ± 1 (sample std sqrt(2) / sqrt(2)), from run 2.
    assert "| zerosum | **gan** | 2 | 6 ± 1 | 50.0% ± 0.0% | 0.1 ± 0 | 2 |" in page
    assert "| zerosum | **pacgan2** | 2 | 8 ± 0 | 50.0% ± 0.0% | 0.1 ± 0 | 1 |" in page
    assert "- **gan**: `ring.yaml`; 0 s training and 0 s scoring per seed (run 2)" in page
    assert page.count("Note: one note.") == 1


def test_a_single_run_reads_as_its_own_table(tmp_path):
    page = results_page([NEWER], tmp_path)
    assert "Run 1970-01-01 at commit `new0000`" in page and "- run 1:" not in page
    assert "| zerosum | **pacgan2** | 2 | 8 ± 0 | 50.0% ± 0.0% | 0.1 ± 0 |\n" in page


def test_runs_under_another_protocol_get_their_own_section(tmp_path):
    small = run(300.0, [row("real data", [8, 8], "real"), row("gan", [1, 1])], protocol=PROTOCOL | {"num_samples": 500})
    page = results_page([OLDER, small], tmp_path)
    assert "## ring\n" in page and "## ring (num_samples 2500)\n" in page
    newest, older = page.split("## ring (num_samples 2500)\n")
    assert "| **gan** | 2 | 1 ± 0 |" in newest and "| **gan** | 2 | 6 ± 1 |" in older


def test_earlier_tables_follow_their_suite_and_unrun_suites_are_listed(tmp_path):
    (tmp_path / "lonely.yaml").write_text("suite: {}\n")
    (tmp_path / "job.yaml").write_text("name: not-a-suite\n")
    earlier = "## ring: before records\n\nold table\n\n## article\n\nits table\n"
    assert list(earlier_sections(earlier)) == ["ring", "article"]
    page = results_page([NEWER], tmp_path, earlier)
    assert page.index("## article") < page.index("## ring\n") < page.index("## ring: before records")
    assert page.endswith("## Not run here yet\n\n- `" + tmp_path.name + "/lonely.yaml`\n")


def test_runs_are_kept_once_as_records(tmp_path):
    folder = tmp_path / "runs" / "ring-20261207-120000"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(asdict(NEWER)))
    (tmp_path / "runs" / "unfinished-20261207-130000").mkdir()
    records = tmp_path / "results"
    assert import_runs(tmp_path / "runs", records) == [records / "ring-20261207-120000.json"]
    assert import_runs(tmp_path / "runs", records) == []
    (loaded,) = load_records(records)
    assert loaded.rows[1].seeds[0].metrics == {"modes": 8, "hq_fraction": 0.5, "kl": 0.1}


def test_a_broken_record_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "ring-1.json").write_text('{"suite": "ring"}')
    with pytest.raises(ConfigError, match=r"ring-1.json: not a benchmark record"):
        load_records(tmp_path)


def test_the_suites_aims_are_a_line_of_its_table_under_its_own_protocol(tmp_path):
    (tmp_path / "job.yaml").write_text("name: j\n")
    suite = {"protocol": PROTOCOL, "seeds": [10, 11], "aims": {"modes": 8, "hq_fraction": 0.98, "kl": 0.05},
             "rows": [{"name": "gan", "job": "job.yaml"}, {"name": "pacgan2", "job": "job.yaml"}]}
    (tmp_path / "ring.yaml").write_text(yaml.safe_dump({"suite": suite}))
    small = run(300.0, [row("gan", [1, 1])], protocol=PROTOCOL | {"num_samples": 500})
    page = results_page([OLDER, NEWER, small], tmp_path)
    # The suite file's protocol has the plain heading and comes first, though its runs are older.
    main, smoke = page.split("## ring (num_samples 500)\n")
    assert "## ring\n" in main
    assert "| zerosum's aim | aim | - | ≥ 8 | ≥ 98.0% | ≤ 0.05 | - |" in main
    assert "zerosum's aim" not in smoke  # a smoke run's 500 samples are not held to the aims
    assert main.index("**gan**") < main.index("**pacgan2**")  # the suite file's order
