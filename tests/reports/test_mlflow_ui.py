"""`harness ui`'s links (harness.ui_links), and the smoke sweep's store looked at through them in
headless Chromium the way a new user would: a fresh browser, the printed link, no clicks."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mlflow.tracking import MlflowClient

from harness import contract, ui_links
from harness.contract import Capabilities, Role, Tag
from harness.tracking import TrackedRun

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "mlflow-ui.png"
VIEWPORT = {"width": 1400, "height": 900}
RUN_NAME = "[role=gridcell][col-id='attributes.`Run Name`']"
SEARCHED = {"kd": "student.width,kd.alpha", "direct": "student.width"}


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None if Path(CHROMIUM).exists() else f"{CHROMIUM} is missing (apt-get install chromium)"


in_a_browser = pytest.mark.skipif(
    _browser_missing() is not None and not os.environ.get("CI"), reason=str(_browser_missing())
)


def _query(url: str) -> dict[str, str]:
    """The query of a link's hash route (`#/route?a=1`), decoded."""
    return {key: values[0] for key, values in parse_qs(urlsplit(urlsplit(url).fragment).query).items()}


@pytest.fixture
def small_store(tmp_path: Path) -> tuple[str, dict[str, set[str]]]:
    """A sweep-shaped experiment `tiny`: kd and direct, two searched trials and two final runs each.
    Returns the store's URI and each method's final run ids."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = TrackedRun(uri, "tiny", "sweep", {Tag.ROLE: Role.SWEEP, Tag.TRIAL_ID: "sweep", Tag.METHODS: "kd,direct"})
    finals: dict[str, set[str]] = {}
    for method, searched in SEARCHED.items():
        for number in range(2):
            tags = contract.run_tags(
                Role.TRIAL, method, f"{method}/t{number}", Capabilities(), parent_run_id=parent.run_id
            )
            run = TrackedRun(uri, "tiny", f"{method}-trial-{number}", tags | {Tag.SEARCHED: searched})
            run.log_params({"student.width": 8 * (number + 1), "kd.alpha": 0.5, "seed": 0, "snn.time_steps": 2})
            run.finish()
        for seed in (1, 2):
            tags = contract.run_tags(
                Role.FINAL, method, f"{method}/f{seed}", Capabilities(), parent_run_id=parent.run_id
            )
            run = TrackedRun(uri, "tiny", f"{method}-final-s{seed}", tags)
            run.log_params({"student.width": 16, "kd.alpha": 0.5, "seed": seed, "snn.time_steps": 2})
            run.log_metrics({contract.TEST_ACCURACY: 0.8 + seed / 100})
            run.finish()
            finals.setdefault(method, set()).add(run.run_id)
    TrackedRun(uri, "tiny", "kd-final-broken", contract.run_tags(Role.FINAL, "kd", "kd/x", Capabilities())).finish(
        "FAILED"
    )
    parent.finish()
    TrackedRun(uri, "single", "probe", {Tag.ROLE: Role.TRIAL}).finish()  # `harness train`: no final runs
    return uri, finals


def test_links_open_the_final_runs_view_and_each_methods_compare_page(small_store) -> None:
    uri, finals = small_store
    client = MlflowClient(uri)
    links = ui_links.experiment_links(client, "tiny", "http://127.0.0.1:5000")
    assert links is not None and links.view_written
    experiment = client.get_experiment_by_name("tiny")
    assert links.runs_table.startswith(f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?")
    assert _query(links.runs_table) == {"workflowType": "machine_learning", "viewStateShareKey": "harness-final-runs"}
    tag = experiment.tags[ui_links.SHARED_VIEW_TAG_PREFIX + ui_links.FINAL_RUNS_VIEW]
    assert json.loads(tag)["name"] == "harness: final runs"
    state = ui_links.shared_view_state(tag)
    assert state["searchFilter"] == "tags.`harness.role` = 'final'"
    assert state["selectedColumns"] == [
        "metrics.`test_accuracy`",
        "params.`student.width`",
        "params.`kd.alpha`",
        "params.`seed`",
        "params.`snn.time_steps`",
    ]
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "harness.method"}]
    assert list(links.compare) == ["kd", "direct"]  # the sweep's order; the failed final run is left out
    for method, (url, count) in links.compare.items():
        query = _query(url)
        assert url.startswith("http://127.0.0.1:5000/#/compare-runs?")
        assert set(json.loads(query["runs"])) == finals[method] and count == 2
        assert json.loads(query["experiments"]) == [experiment.experiment_id]
        assert query["workflowType"] == "machine_learning"
    assert "  compare kd (2 final runs): " in "\n".join(links.lines())

    again = ui_links.experiment_links(client, "tiny", "http://127.0.0.1:5000")  # an unchanged view is not rewritten
    assert (
        again == links
        and client.get_experiment_by_name("tiny").tags[ui_links.SHARED_VIEW_TAG_PREFIX + "harness-final-runs"] == tag
    )


def test_ui_lines_cover_every_harness_experiment_and_survive_a_bad_store(small_store, tmp_path: Path) -> None:
    uri, _ = small_store
    lines = ui_links.ui_lines(uri, "0.0.0.0", 5001)
    text = "\n".join(lines)
    assert "experiment 'tiny':" in text and "http://127.0.0.1:5001/#/experiments/" in text
    assert re.search(r"experiment 'single': no final runs yet; its runs: \S+/runs\?workflowType=machine_learning", text)
    assert "Default" not in text
    assert ui_links.sweep_ui_lines(uri, "tiny")[0] == f"Open the MLflow UI with: harness ui --tracking-uri {uri}, then:"
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    assert "no links" in ui_links.ui_lines(f"sqlite:///{broken}")[0]


def test_without_a_view_the_link_still_filters_the_final_runs() -> None:
    url = ui_links.runs_table_url("http://h:1/", "7", view=None)
    assert url.startswith("http://h:1/#/experiments/7/runs?")
    assert _query(url) == {
        "workflowType": "machine_learning",
        "searchFilter": "tags.`harness.role` = 'final'",
        "orderByKey": "metrics.`test_accuracy`",
        "orderByAsc": "false",
    }
    assert ui_links.ui_base_url("https://mlflow.example/") == "https://mlflow.example"
    assert ui_links.ui_base_url("sqlite:////x.db", "::1", 5002) == "http://[::1]:5002"


@pytest.fixture
def printed_ui(smoke_sweep, harness_ui) -> tuple[str, list[str]]:
    """`harness ui` on the smoke store as a user starts it: (its base URL, what it printed)."""
    _, options, _ = smoke_sweep
    served = harness_ui(options.tracking_uri)
    return served.base, served.stdout.splitlines()


def _link(lines: list[str], label: str) -> str:
    found = [line.split(": ", 1)[1] for line in lines if line.strip().startswith(label)]
    assert len(found) == 1, (label, lines)
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@in_a_browser
def test_the_printed_link_opens_the_final_runs_with_accuracy_and_searched_params(
    smoke_sweep, printed_ui, tmp_path: Path, mlflow_runs
) -> None:
    from playwright.sync_api import sync_playwright

    _, options, _ = smoke_sweep
    base, lines = printed_ui
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    finals = mlflow_runs(options.tracking_uri, options.experiment, "tags.`harness.role` = 'final'")
    trials = mlflow_runs(options.tracking_uri, options.experiment, "tags.`harness.role` = 'trial'")
    searched = {dim for run in trials for dim in run.data.tags[Tag.SEARCHED].split(",")}
    assert searched == {"student.width", "snn.time_steps", "kd.alpha", "conversion.levels"}
    columns = ["metrics.`test_accuracy`", *(f"params.`{dim}`" for dim in sorted(searched))]
    assert f"experiment '{options.experiment}':" in lines
    table_link = _link(lines, "final runs")
    assert table_link.startswith(f"{base}/#/experiments/{experiment.experiment_id}/runs?")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()  # a fresh context: empty localStorage
            page.goto(table_link)
            page.locator("[role=columnheader][col-id='metrics.`test_accuracy`']").wait_for(timeout=90_000)
            page.locator(RUN_NAME).filter(has_text="-final").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            # What the first screen shows, no click made.
            route = urlsplit(page.url).fragment
            headers = page.eval_on_selector_all(
                "[role=columnheader][col-id]", "cells => cells.map(c => [c.getAttribute('col-id'), c.innerText])"
            )
            listed = {name.strip() for name in page.locator(f"{RUN_NAME} a").all_inner_texts()} - {""}
            body = page.inner_text("body")
            inputs = page.eval_on_selector_all("input", "fields => fields.map(f => f.value)")
            page.screenshot(path=str(tmp_path / "first-screen.png"))
            # MLflow opens its assistant panel on a first visit from localhost: close it for the docs' shot.
            _close_side_panel(page)
            grid = page.locator(".ag-root").first.bounding_box()
            boxes = {key: page.locator(f"[role=columnheader][col-id='{key}']").bounding_box() for key in columns}
            screenshot = tmp_path / "mlflow-ui.png"
            page.screenshot(path=str(screenshot))

            compare = {}
            for method in ("kd", "direct", "conversion"):
                other = browser.new_context(viewport=VIEWPORT).new_page()
                other.goto(_link(lines, f"compare {method} "))
                other.get_by_text(re.compile(r"Comparing \d+ Runs? from 1 Experiment")).wait_for(timeout=90_000)
                other.get_by_text(f"{method}-final", exact=False).first.wait_for(timeout=30_000)
                compare[method] = other.inner_text("body")
                other.context.close()
        finally:
            browser.close()

    assert route.startswith(f"/experiments/{experiment.experiment_id}/runs?"), route  # not the GenAI overview
    assert "Token Usage" not in body and "Model registry" in body  # the Model training sidebar
    assert "harness: final runs" in body and "tags.`harness.role` = 'final'" in inputs  # the view, its filter
    found = dict(headers)
    assert all(found.get(key) == key.split("`")[1] for key in columns), headers
    assert listed == {run.info.run_name for run in finals}  # every final run, no trial, no parent
    for key, box in boxes.items():
        assert box is not None and box["x"] + box["width"] <= grid["x"] + grid["width"] + 1, (key, box, grid)
    assert screenshot.stat().st_size > 10_000
    for method, text in compare.items():
        names = {run.info.run_name for run in finals if run.data.tags[Tag.METHOD] == method}
        assert f"Comparing {len(names)} Run" in text and names <= set(re.findall(r"\S+-final\S*", text)), method
        assert "Model registry" in text and "Token Usage" not in text
    if os.environ.get("HARNESS_UPDATE_DOCS"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def _close_side_panel(page) -> None:
    """Closes the MLflow assistant panel where the UI opens it, so the runs table fills the shot."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
        page.wait_for_timeout(800)
