"""Report generator: an experiment's MLflow runs -> pandas -> tables (Markdown, LaTeX, CSV) and seaborn figures.

Entry point: `reports.build.build_report(tracking_uri, experiment, out_dir)`. This package builds on
`harness`; `harness` imports it in one place only (the `report` and `sweep` commands of `harness.cli`).
"""
