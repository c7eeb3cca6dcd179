"""`harness ui` over the smoke sweep's store, looked at in headless Chromium like a user would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

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
RUN_NAME = "[role=gridcell][col-id='attributes.`Run Name`']"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None if Path(CHROMIUM).exists() else f"{CHROMIUM} is missing (apt-get install chromium)"


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(_browser_missing() is not None and not os.environ.get("CI"), reason=str(_browser_missing())),
]


@pytest.fixture
def ui_url(smoke_sweep, harness_ui) -> str:
    """`harness ui` on the smoke store: its base URL once the API answers."""
    _, options, _ = smoke_sweep
    return harness_ui(options.tracking_uri)


def test_the_experiment_page_lists_every_trial_run_by_name(smoke_sweep, ui_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    _, options, summary = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'", max_results=1000)
    expected = {run.info.run_name for run in runs}
    parent_name = client.get_run(summary["parent_run_id"]).info.run_name
    screenshot = tmp_path / "mlflow-ui.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(f"{ui_url}/#/experiments/{experiment.experiment_id}/runs")
            parent = page.locator(RUN_NAME).filter(has_text=parent_name).first
            parent.wait_for(timeout=90_000)  # the runs table loads after the page
            parent.get_by_role("button").first.click()  # child runs are nested under the sweep's run
            page.locator(RUN_NAME).filter(has_text="kd-").first.wait_for(timeout=30_000)
            listed = {name.strip() for name in page.locator(f"{RUN_NAME} a").all_inner_texts()}
            _close_side_panel(page)
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    assert expected <= listed, expected - listed
    assert {name.split("-")[0] for name in expected} == {"kd", "direct", "conversion"}
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("HARNESS_UPDATE_DOCS"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def _close_side_panel(page) -> None:
    """Closes the MLflow assistant panel where the UI opens it, so the runs table fills the shot."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)
