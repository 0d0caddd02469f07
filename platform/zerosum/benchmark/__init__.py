"""Benchmark suites: zerosum's rows beside the published tables, under the papers' protocols.

`suite` (the suite file and `published.yaml`), `protocols` (the measurements), `runner`
(tuning, training the seeds, scoring), `table` (Markdown, CSV, plot, MLflow runs and
`docs/results.md`). The CLI verb is `zerosum benchmark` (`zerosum.cli.benchmark`).
"""
