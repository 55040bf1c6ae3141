"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Selenium
through Debian's `chromium-driver`. The page is loaded first; a task created afterwards must
appear by the page's own refresh; its "Run" button must deliver it and the attempt must show
the worker's status. A screenshot is written under the test's tmp dir (and, with
DASHBOARD_SCREENSHOT=PATH, to PATH too: how docs/dashboard.png is made).

Skipped, with the reason, where Chromium, its driver or Selenium is missing:
`apt-get install chromium chromium-driver` and `pip install -r requirements-test.txt`."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import Served, serve
from emulator_support import LOCATION, http_task
from google.cloud import scheduler_v1, tasks_v2

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("the browser test needs Debian's chromium and chromium-driver: "
                "apt-get install chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="the browser test needs Selenium: "
    "pip install -r requirements-test.txt")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

WAIT = 15.0  # seconds any one thing may take to show; the page refreshes every second


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("dashboard-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--no-proxy-server", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given, so Selenium Manager downloads nothing.
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def shows(browser: Any, text: str) -> bool:
    return text in browser.find_element(By.TAG_NAME, "main").text


def wait(browser: Any, condition: Any) -> Any:
    """Until `condition(browser)` is truthy; an element the page's live refresh replaced while
    it was being read (StaleElementReferenceException) just means: look again."""
    return WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(condition)


def click(browser: Any, *locator: str) -> None:
    """Click the element `locator` finds, finding it again if a refresh replaced it."""
    def clicked(b: Any) -> bool:
        b.find_element(*locator).click()
        return True

    wait(browser, clicked)


def test_a_created_task_appears_runs_from_its_button_and_shows_the_workers_status(
    served: Served, browser: Any, ident: str, tmp_path: Path
) -> None:
    # Given a page loaded before the task exists, beside a paused queue and a daily job
    tasks = served.emulator.tasks_client()
    suffix = ident.rsplit("-", 1)[1]  # short names: this picture is in the README
    queue = tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=f"{LOCATION}/queues/invoices-{suffix}",
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=5)))
    emails = tasks.create_queue(parent=LOCATION,
                                queue=tasks_v2.Queue(name=f"{LOCATION}/queues/emails-{suffix}"))
    tasks.pause_queue(name=emails.name)
    scheduler = served.emulator.scheduler_client()
    scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=f"{LOCATION}/jobs/daily-report-{suffix}", schedule="0 7 * * *",
        time_zone="Asia/Kolkata",
        http_target=scheduler_v1.HttpTarget(uri=served.worker.url("/reports/daily"))))
    browser.get(served.base_url + "/")
    assert browser.title == "Cloud Tasks emulator"

    # When a task is created (due in an hour), it appears without a reload
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    task = tasks.create_task(parent=queue.name, task=http_task(
        served.worker.url(f"/invoices/{suffix}?status=201"), schedule_time=later,
        headers={"Content-Type": "application/json"}, body=b'{"order": 42}'))
    tasks.create_task(parent=emails.name,
                      task=http_task(served.worker.url(f"/emails/welcome-{suffix}")))
    task_id = task.name.rsplit("/", 1)[1]
    run = (By.CSS_SELECTOR, f'button[aria-label="Run task {task_id}"]')
    wait(browser, lambda b: b.find_elements(*run))
    assert browser.find_element(By.ID, "live").is_selected()

    # ... and its Run button delivers it now: the attempt shows the worker's 201
    click(browser, *run)
    wait(browser, lambda b: shows(b, f"Sent for dispatch now: task {task.name}."))
    delivered = served.worker.wait_under(f"/invoices/{suffix}", finished=True)
    assert delivered[0].status == 201

    def attempt_row(b: Any) -> list[str]:
        rows = b.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
        return [r.text for r in rows if task_id in r.text]

    (shown,) = wait(browser, attempt_row)
    assert " 201 succeeded " in f" {shown} "
    assert "POST " + served.worker.url(f"/invoices/{suffix}?status=201") in shown
    assert not browser.find_elements(*run)  # succeeded: the task is gone

    # The headers it sent open under the row
    click(browser, By.CSS_SELECTOR, "#attempts tbody tr details summary")
    wait(browser, lambda b: "X-CloudTasks-TaskName" in b.find_element(By.ID, "attempts").text)

    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []  # no CSP violation, no script error, no failed refresh

    picture = tmp_path / "dashboard.png"
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True})
    picture.write_bytes(base64.b64decode(shot["data"]))  # the whole page, not the window
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(picture, os.environ["DASHBOARD_SCREENSHOT"])
