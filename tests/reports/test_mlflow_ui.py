"""`harness ui` over the smoke sweep's store, looked at in headless Chromium like a user would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ui_url(smoke_sweep, tmp_path: Path) -> Iterator[str]:
    """`harness ui` on the smoke store; yields its base URL once the API answers."""
    _, options, _ = smoke_sweep
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "ui", "--tracking-uri", options.tracking_uri, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=5", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "harness ui exited"
                assert time.monotonic() < deadline, "harness ui did not answer in time"
                time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


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
