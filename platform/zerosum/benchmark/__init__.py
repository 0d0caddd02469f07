"""Benchmark suites: zerosum's rows beside the published tables, under the papers' protocols.

`suite` (the suite file and `published.yaml`), `protocols` (the measurements), `runner`
(tuning, training the seeds, scoring), `table` (a run's Markdown, CSV, plot and MLflow
runs), `page` (`docs/results.md` from the kept records). The CLI verb is `zerosum benchmark` (`zerosum.cli.benchmark`).
"""
