"""`harness.contract`: what a method declares survives its run tag, also a tag older than a field."""

from __future__ import annotations

import json

from baselines.conversion import COLLAPSE_POINTS, ConversionMethod
from harness.contract import Capabilities, ReportRow


def test_capabilities_round_trip_through_the_tag_with_collapse_points() -> None:
    declared = ConversionMethod.capabilities
    assert declared.report_rows[0].collapse_points == COLLAPSE_POINTS == 10.0
    assert Capabilities.from_tag(declared.to_tag()) == declared


def test_a_report_row_of_an_older_tag_gets_no_collapse_points() -> None:
    older = {
        "needs_teacher": False,
        "trains_at_time_steps": False,
        "curve_from_one_run": True,
        "report_rows": [
            {"label": "ANN", "clean_metric": "ann_test_accuracy", "noise_prefix": "ann_noise/", "note": ""}
        ],
    }
    parsed = Capabilities.from_tag(json.dumps(older))
    assert parsed.report_rows == (ReportRow("ANN", "ann_test_accuracy", "ann_noise/"),)
    assert parsed.report_rows[0].collapse_points is None
