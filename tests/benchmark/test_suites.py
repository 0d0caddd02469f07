"""Benchmark suites without training: the shipped files load, the table arithmetic, refusals."""

import math

import pytest
import yaml

from zerosum.benchmark.protocols import mean_and_error, protocol_scores
from zerosum.benchmark.results import RowResult, SeedResult, SuiteResult
from zerosum.benchmark.suite import PROTOCOL_COLUMNS, load_published, load_suite
from zerosum.benchmark.table import fmt_cell, markdown_table, table_rows
from zerosum.errors import ConfigError
from zerosum_testing import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
SUITES = sorted(p for p in BENCHMARKS.glob("*.yaml") if p.name != "published.yaml")


def test_published_rows_load_and_each_names_its_source():
    rows = load_published(BENCHMARKS / "published.yaml")
    assert len(rows) >= 15
    suites = {p.stem for p in SUITES}
    for row in rows:
        assert row.source.strip() and row.paper.strip() and row.table.strip() and row.protocol.strip()
        # Every published row is shown by a suite, in columns that suite's protocol has.
        assert row.suite in suites, row.id
        protocol = load_suite(BENCHMARKS / f"{row.suite}.yaml").spec.protocol.kind
        assert set(row.metrics) <= set(PROTOCOL_COLUMNS[protocol]), row.id


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_every_suite_loads_with_its_published_rows(path):
    suite = load_suite(path)
    assert suite.spec.protocol.source.strip()
    assert all(row.suite == suite.name for row in suite.published)
    # Tuned rows tune on seeds the table does not report (checked again when they run).
    for row in suite.spec.rows:
        if row.tune is not None:
            campaign = yaml.safe_load(suite.path(row.tune).read_text())["campaign"]
            searched = campaign["search_space"]["schedule.seed"]
            (values,) = searched.values()
            assert not set(values) & set(suite.spec.seeds)


def test_mean_and_standard_error_by_hand():
    # mean 2, sample variance ((1)^2 + 0 + 1^2) / 2 = 1, standard error sqrt(1 / 3).
    mean, error = mean_and_error([1.0, 2.0, 3.0])
    assert mean == 2.0 and error == pytest.approx(math.sqrt(1 / 3), rel=1e-12)
    assert math.isnan(mean_and_error([5.0])[1])
    assert fmt_cell(0.956, 0.01, "hq_fraction") == "95.6% ± 1.0%"
    assert fmt_cell(7.9, 0.1, "modes") == "7.9 ± 0.1"


def test_table_marks_zerosum_rows_and_puts_published_rows_beside_them():
    suite = load_suite(BENCHMARKS / "ring8.yaml")
    seeds = [SeedResult(10, {"modes": 8.0, "hq_fraction": 0.9, "kl": 0.01}),
             SeedResult(11, {"modes": 7.0, "hq_fraction": 0.8, "kl": 0.03})]
    result = SuiteResult("ring8", "/tmp/x", suite.spec.protocol.model_dump(), [RowResult("gan", "zerosum", seeds)], {})
    lines = table_rows(result, suite.published)
    assert lines[0]["row"] == "**gan**" and lines[0]["modes"] == "7.5 ± 0.5" and lines[0]["hq_fraction"] == "85.0% ± 5.0%"
    assert [line["row"] for line in lines[1:]] == ["PacGAN2", "PacGAN3"]
    assert lines[1]["modes"] == "7.9 ± 0.1" and lines[1]["kl"] == "0.07"
    # A KL undefined on one seed (no high-quality sample) leaves the others' mean, and says so.
    seeds[1].metrics["kl"] = math.nan
    assert table_rows(result, [])[0]["kl"] == "0.01 (1 of 2 seeds)"
    text = markdown_table(lines)
    assert text.count("\n") == 2 + len(lines) and "| Lin et al. 2018, PacGAN, Table 1 | PacGAN2 |" in text


def test_mixture_protocol_on_points_at_seven_of_eight_modes():
    from evals.modes import mixture_centres

    suite = load_suite(BENCHMARKS / "ring8.yaml")
    centres, _ = mixture_centres("ring8-pacgan")
    import torch

    # 2,500 points, as many at each of 7 centres as divides (357 each, 1 left at a centre too).
    points = torch.tensor(centres[[i % 7 for i in range(2500)]], dtype=torch.float32)
    scores = protocol_scores(suite.spec.protocol, None, points)
    counts = [2500 // 7 + (1 if i < 2500 % 7 else 0) for i in range(7)]
    kl = sum(c / 2500 * math.log(c / 2500 * 8) for c in counts)
    assert scores["modes"] == 7 and scores["hq_fraction"] == 1.0
    # float64 sums of 7 terms: 1e-12 relative.
    assert scores["kl"] == pytest.approx(kl, rel=1e-12)
    with pytest.raises(ValueError, match="2500 samples; got 10"):
        protocol_scores(suite.spec.protocol, None, points[:10])


def test_bad_suites_are_one_line_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"suite": {"protocol": {"kind": "mixture", "data": "ring9", "num_samples": 10,
                                                           "source": "x"}, "seeds": [1], "rows": []}}))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert "suite.protocol.data" in str(err.value)
    good = {"protocol": {"kind": "mixture", "data": "ring8", "num_samples": 10, "source": "x"}, "seeds": [1],
            "rows": [{"name": "a", "job": "missing.yaml"}]}
    path.write_text(yaml.safe_dump({"suite": good}))
    with pytest.raises(ConfigError, match=r"suite.rows.0.job: no file at .*missing.yaml"):
        load_suite(path)
    with pytest.raises(ConfigError, match="no such suite file"):
        load_suite(tmp_path / "nope.yaml")
    (tmp_path / "job.yaml").write_text("name: j\n")
    path.write_text(yaml.safe_dump({"suite": good | {"rows": [{"name": "a", "job": "job.yaml"}], "aims": {"fid": 6.7}}}))
    with pytest.raises(ConfigError, match=r"aims: \['fid'\] are not columns of the mixture protocol"):
        load_suite(path)


def test_rows_picks_the_named_rows_in_the_suite_files_order():
    from zerosum.benchmark.suite import select_rows

    suite = load_suite(BENCHMARKS / "ring8.yaml")
    names = [row.name for row in suite.spec.rows]
    picked = select_rows(suite, [names[2], names[0]])
    assert [row.name for row in picked.spec.rows] == [names[0], names[2]]
    assert picked.published == suite.published and len(suite.spec.rows) == len(names)
    with pytest.raises(ConfigError, match=r"^--rows: ring8.yaml has no row 'pacgan9'; its rows: 'gan', "):
        select_rows(suite, ["pacgan9"])


def test_a_finished_tuning_campaign_of_the_same_file_is_reused(tmp_path):
    from zerosum.benchmark.runner import finished_tuning
    from zerosum.records import FolderRecord

    def campaign_folder(name: str, text: str, finished_at: float | None) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "campaign.yaml").write_text(text)
        FolderRecord("campaign", "tune", "sqlite://", "run", "exp", 1.0, finished_at).save(folder)

    campaign_folder("tune-20261201-000000", "same", 5.0)
    campaign_folder("tune-20261202-000000", "same", 9.0)
    campaign_folder("tune-20261203-000000", "same", None)  # interrupted: never reused
    campaign_folder("tune-20261204-000000", "edited", 12.0)  # another search: never reused
    assert finished_tuning(tmp_path, "tune", "same") == tmp_path / "tune-20261202-000000"
    assert finished_tuning(tmp_path, "tune", "new") is None
