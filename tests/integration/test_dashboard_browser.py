"""The dashboard in a real browser: Debian's headless chromium through /usr/bin/chromedriver,
against the local stack. `python3 dev.py test` installs chromium and chromium-driver when missing.

Screenshots of every page go to .jobq-local/dashboard-screenshots/ (the test prints where).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / ".jobq-local" / "dashboard-screenshots"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
]
EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}

if not (CHROMEDRIVER.exists() and CHROMIUM.exists()):
    if os.environ.get("JOBQ_SKIP_BROWSER") == "1":
        pytest.skip("JOBQ_SKIP_BROWSER=1 and no chromium", allow_module_level=True)
    raise RuntimeError("the dashboard's browser test needs Debian's chromium and chromium-driver: python3 dev.py test installs them "
                       "(as root); or apt-get install chromium chromium-driver; JOBQ_SKIP_BROWSER=1 skips it")

from selenium import webdriver  # noqa: E402  (after the check above, so the message is clear)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def shots(pytestconfig: pytest.Config) -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"dashboard screenshots: {SHOTS}")
    return SHOTS


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="jobq-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def jobs(local_stack: LocalStackProcess, target: TargetServer) -> dict[str, Any]:
    """Jobs of two users that completed and failed; the failed ones succeed when retried."""
    schedule = f"ui-nightly-{uuid.uuid4().hex[:6]}"
    with local_stack.client("root", admin=True) as admin:
        response = admin.put("/queues/email-sending/processors/ui-once", json={"kind": "http", "url": f"{target.url}/fail-times/1", "timeoutSeconds": 5})
        assert response.status_code == 200, response.text
        admin.post("/schedules", json={"name": schedule, "queue": "report-generation", "type": "generate-report",
                                       "data": {"reportType": "daily"}, "cron": "0 2 * * *", "timezone": "Europe/Paris", "limit": 30})
    made: dict[str, Any] = {"uma": [], "victor": [], "schedule": schedule}
    with local_stack.client("uma") as uma, local_stack.client("victor") as victor:
        for _ in range(2):
            made["uma"].append(uma.post("/jobs", json={"queue": "email-sending", "type": "send-email", "data": EMAIL}).json()["data"]["jobId"])
        for key in ("failed_a", "failed_b"):
            made[key] = uma.post("/jobs", json={"queue": "email-sending", "type": "ui-once", "data": {"n": key},
                                                "options": {"attempts": 1}}).json()["data"]["jobId"]
        made["victor_job"] = victor.post("/jobs", json={"queue": "email-sending", "type": "send-email",
                                                        "data": {**EMAIL, "subject": "victor's secret"},
                                                        "options": {"jobId": f"victor-secret-{uuid.uuid4().hex[:8]}"}}).json()["data"]["jobId"]
        for job_id in made["uma"]:
            assert wait_for_status(uma, job_id, {"completed", "failed"})["status"] == "completed"
        for key in ("failed_a", "failed_b"):
            assert wait_for_status(uma, made[key], {"completed", "failed"})["status"] == "failed"
        wait_for_status(victor, made["victor_job"], {"completed", "failed"})
    return made


def sign_in(browser: WebDriver, stack: LocalStackProcess, user: str, *, admin: bool, read_only: bool = False) -> None:
    browser.get(f"{stack.api_url}/dashboard")
    browser.execute_script("sessionStorage.clear()")
    fragment = f"token={stack.token(user, admin=admin)}" + ("&readonly=1" if read_only else "")
    browser.get(f"{stack.api_url}/dashboard#{fragment}")
    until(browser, lambda b: b.find_elements(By.ID, "user") and b.find_element(By.ID, "user").text == user)
    assert "token=" not in browser.current_url  # the token left the address bar


def go(browser: WebDriver, stack: LocalStackProcess, fragment: str) -> None:
    browser.get(f"{stack.api_url}/dashboard#{fragment}")


def until(browser: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 40) -> Any:
    # A page re-renders while it is polled (a toast goes, a table refreshes): an element found a moment
    # ago may be gone when its text is read; that look failed, the next one decides. 40 s: a loaded machine.
    return WebDriverWait(browser, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def shot(browser: WebDriver, folder: Path, name: str) -> None:
    """The whole page (not only the window), through the DevTools protocol."""
    time.sleep(0.3)  # let the last render paint
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 3000), "scale": 1}
    image = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    (folder / f"{name}.png").write_bytes(base64.b64decode(image["data"]))


def page_counts(browser: WebDriver) -> dict[str, int]:
    cells = browser.find_elements(By.CSS_SELECTOR, "[data-count]")
    return {cell.get_attribute("data-count"): int(cell.text) for cell in cells}


def api_counts(stack: LocalStackProcess) -> dict[str, int]:
    with stack.client("root", admin=True) as admin:
        queues = admin.get("/queues").json()["data"]
    states = ("waiting", "active", "delayed", "completed", "failed", "cancelled", "stalled", "waiting-children")
    return {f"{q['name']}:{s}": q["liveStats"][s] for q in queues for s in states}


def test_the_queue_counts_shown_match_the_api(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver, shots: Path) -> None:
    sign_in(browser, local_stack, "root", admin=True)
    go(browser, local_stack, "/queues")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '[data-count="email-sending:completed"]'))

    # Both read the same counters; they may move between the two reads, so compare until they agree.
    deadline = time.monotonic() + 20
    while True:
        shown, expected = page_counts(browser), api_counts(local_stack)
        if shown == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert shown == expected
    assert expected["email-sending:completed"] >= 2 and expected["email-sending:failed"] >= 2
    dlq = browser.find_element(By.CSS_SELECTOR, '[data-dlq="email-sending"]').text
    assert int(dlq) >= 0
    shot(browser, shots, "01-queues")


def test_a_failed_job_is_retried_from_the_page_and_completes(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver,
                                                              shots: Path) -> None:
    sign_in(browser, local_stack, "root", admin=True)
    # From the job's own page.
    go(browser, local_stack, f"/job/{jobs['failed_a']}?user=uma")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#job-view [data-status="failed"]'))
    shot(browser, shots, "04-job-failed")
    browser.find_element(By.ID, "retry").click()
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#job-view .panel [data-status="completed"]'), timeout=30)
    assert browser.find_element(By.ID, "progress").get_attribute("data-progress") == "100"
    history = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert len(history) == 2  # the failed attempt and the one after the retry
    shot(browser, shots, "05-job-completed")

    # From the failed jobs of the queue: select it, "Retry selected".
    go(browser, local_stack, "/jobs?queue=email-sending&status=failed")
    box = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'[data-select="{jobs["failed_b"]}"]'))[0]
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{jobs["failed_a"]}"]')  # no longer failed
    shot(browser, shots, "03-jobs-failed")
    box.click()
    browser.find_element(By.CSS_SELECTOR, '[data-bulk="retry"]').click()
    until(browser, lambda b: any("retry: 1 done" in t.text for t in b.find_elements(By.CSS_SELECTOR, ".toast")))
    with local_stack.client("uma") as uma:
        retried = wait_for_status(uma, jobs["failed_b"], {"completed"}, timeout=30)
    assert retried["retries"] == 1 and len(retried["history"]) == 2
    go(browser, local_stack, "/jobs?queue=email-sending")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-job="{jobs["failed_b"]}"] [data-status="completed"]'), timeout=15)
    shot(browser, shots, "02-jobs")


@pytest.mark.timeout(300)
def test_the_job_page_shows_progress_while_the_job_runs(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver,
                                                       shots: Path) -> None:
    sign_in(browser, local_stack, "root", admin=True)
    # transcode-video reports progress after each format; the test stack spends 0.05 s on each: ~5 s in all.
    with local_stack.client("uma") as uma:
        job_id = uma.post("/jobs", json={"queue": "video-processing", "type": "transcode-video",
                                         "data": {"videoUrl": "s3://in/long.mov", "formats": [f"f{i}" for i in range(100)]}}).json()["data"]["jobId"]
    go(browser, local_stack, f"/job/{job_id}?user=uma")
    seen: set[int] = set()
    # The changes are pushed over the WebSocket, not polled.
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#live[data-live="push"]'))

    def finished(b: WebDriver) -> bool:
        # Read in the page: it re-renders on every change, so element handles go stale.
        progress, status = b.execute_script(
            "const bar = document.getElementById('progress'), tag = document.querySelector('#job-view .panel [data-status]');"
            "return [bar ? bar.dataset.progress : null, tag ? tag.dataset.status : null];")
        if progress is not None:
            seen.add(int(float(progress)))
        return bool(status == "completed")

    until(browser, finished, timeout=90)  # a deadline, not a wait: ~5 s alone, longer while other workers run
    assert {p for p in seen if 0 < p < 100}, f"no progress between 0 and 100 was shown: {sorted(seen)}"
    assert max(seen) == 100
    assert browser.find_element(By.ID, "live").get_attribute("data-live") == "push"
    shot(browser, shots, "05b-job-video")


# The fault: a WebSocket that is refused (closes before it opens), in place of the browser's own.
REFUSED_WEBSOCKET = """
window.WebSocket = class { constructor() { setTimeout(() => this.onclose && this.onclose({ code: 1006 }), 50); } send() {} close() {} };
"""


def test_the_job_page_polls_when_the_websocket_cannot_be_reached(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver) -> None:
    with local_stack.client("uma") as uma:
        job_id = uma.post("/jobs", json={"queue": "video-processing", "type": "transcode-video",
                                         "data": {"videoUrl": "s3://in/refused.mov", "formats": [f"f{i}" for i in range(20)]}}).json()["data"]["jobId"]
    fault = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": REFUSED_WEBSOCKET})["identifier"]
    try:
        sign_in(browser, local_stack, "root", admin=True)  # loads the page afresh, with the fault
        go(browser, local_stack, f"/job/{job_id}?user=uma")
        until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#live[data-live="poll"]'))
        until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#job-view .panel [data-status="completed"]'), timeout=40)
        assert browser.find_element(By.ID, "progress").get_attribute("data-progress") == "100"
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": fault})
        browser.get(f"{local_stack.api_url}/dashboard")  # the next test's page has the browser's own WebSocket


def test_a_job_is_removed_from_its_page(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver) -> None:
    removed = jobs["uma"][1]
    sign_in(browser, local_stack, "root", admin=True)
    go(browser, local_stack, f"/job/{removed}?user=uma")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#job-view [data-status="completed"]'))
    browser.find_element(By.ID, "remove").click()
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open] [data-confirm]"))[0].click()
    with local_stack.client("uma") as uma:
        until(browser, lambda _: uma.get(f"/jobs/{removed}").status_code == 404)


def test_a_users_session_never_shows_another_users_job(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver,
                                                       shots: Path) -> None:
    sign_in(browser, local_stack, "uma", admin=False)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-job]"))
    owners = {row.get_attribute("data-owner") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-job]")}
    assert owners == {"uma"}
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")] == ["My jobs"]
    assert jobs["victor_job"] not in browser.page_source
    shot(browser, shots, "08-user-jobs")

    # Searching for it by id, or opening it by address, shows nothing of it.
    go(browser, local_stack, f"/jobs?id={jobs['victor_job']}")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#jobs .empty"))
    go(browser, local_stack, f"/job/{jobs['victor_job']}?user=victor")
    until(browser, lambda b: b.find_elements(By.ID, "job-missing"))
    assert "victor's secret" not in browser.page_source
    # Admin pages fall back to the user's own jobs: the API answers 403 to their calls.
    go(browser, local_stack, "/queues")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#jobs"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-count]")


def test_read_only_mode_offers_no_change(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver, shots: Path) -> None:
    sign_in(browser, local_stack, "root", admin=True, read_only=True)
    go(browser, local_stack, "/queues")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "[data-count]"))
    assert browser.find_element(By.ID, "readonly-tag").is_displayed()
    go(browser, local_stack, "/jobs?queue=email-sending")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-job]"))
    changes = browser.find_elements(By.CSS_SELECTOR, "button.change, input.change, .change button")
    assert changes and not any(el.is_displayed() for el in changes)
    shot(browser, shots, "09-read-only")


def test_every_page_renders_with_data(local_stack: LocalStackProcess, jobs: dict[str, Any], browser: WebDriver, shots: Path) -> None:
    sign_in(browser, local_stack, "root", admin=True)
    go(browser, local_stack, "/dlq/email-sending")
    until(browser, lambda b: "dead-letter queue of email-sending" in b.find_element(By.ID, "dlq-total").text)
    shot(browser, shots, "06-dead-letters")
    go(browser, local_stack, "/schedules")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-schedule]"))
    assert "2" in browser.find_element(By.CSS_SELECTOR, f'[data-next-run="{jobs["schedule"]}"]').text  # a date, not "—"
    shot(browser, shots, "07-schedules")
    # Edit its cron, time zone and limit in place.
    browser.find_element(By.CSS_SELECTOR, f'tr[data-schedule="{jobs["schedule"]}"] [data-edit]').click()
    dialog = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open]"))[0]
    for field, value in (("cron", "15 3 * * *"), ("timezone", "Asia/Tokyo"), ("limit", "40")):
        box = dialog.find_element(By.NAME, field)
        box.clear()
        box.send_keys(value)
    dialog.find_element(By.CSS_SELECTOR, "[data-confirm]").click()
    with local_stack.client("root", admin=True) as admin:
        def edited(_: WebDriver) -> bool:
            s = admin.get(f"/schedules/{jobs['schedule']}").json()["data"]
            return (s["cron"], s["timezone"], s["limit"]) == ("15 3 * * *", "Asia/Tokyo", 40)
        until(browser, edited)
    # ...and the edit is in the audit trail, with who made it.
    go(browser, local_stack, "/audit")
    until(browser, lambda b: any("update_schedule" in row.text and "root" in row.text for row in b.find_elements(By.CSS_SELECTOR, "#audit tr[data-request]")))
    shot(browser, shots, "11-audit")
    go(browser, local_stack, "/metrics/email-sending?hours=1&resolution=minute")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "[data-chart] rect"))  # bars for the finished jobs
    shot(browser, shots, "10-metrics")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{local_stack.api_url}/dashboard")
    until(browser, lambda b: b.find_elements(By.ID, "token-input"))
    shot(browser, shots, "00-sign-in")
    problems = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")]
    assert not [p for p in problems if "403" not in p["message"] and "404" not in p["message"]], problems


def test_a_flows_job_page_shows_its_parent_and_children_as_the_api_has_them(local_stack: LocalStackProcess, jobs: dict[str, Any],
                                                                           browser: WebDriver, shots: Path) -> None:
    email = {"queue": "email-sending", "type": "send-email", "data": EMAIL}
    root = f"ui-flow-{uuid.uuid4().hex[:6]}"
    tree = {**email, "options": {"jobId": root}, "children": [
        {**email, "children": [email]}, email, {**email, "options": {"delay": 600_000}, "onFailure": "ignoreDependencyOnFailure"},
        {**email, "options": {"delay": 8_000}}]}
    with local_stack.client("uma") as uma:
        assert uma.post("/flows", json=tree).status_code == 201
        for child in (f"{root}:0", f"{root}:1"):
            wait_for_status(uma, child, {"completed"})
        flow = uma.get(f"/flows/{root}").json()["data"]
    expected = {c["jobId"]: c["status"] for c in flow["children"]}
    assert expected == {f"{root}:0": "completed", f"{root}:1": "completed", f"{root}:2": "delayed", f"{root}:3": "delayed"}
    sign_in(browser, local_stack, "uma", admin=False)

    go(browser, local_stack, f"/job/{root}")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#flow-children > li"))
    shown = {li.get_attribute("data-flow-job"): li.get_attribute("data-flow-status")
             for li in browser.find_elements(By.CSS_SELECTOR, "#flow-children > li")}
    assert shown == expected
    assert browser.find_element(By.CSS_SELECTOR, f'#flow-children li[data-flow-job="{root}:0.0"]').get_attribute("data-flow-status") == "completed"
    assert "6 jobs, 3 finished" in browser.find_element(By.ID, "flow-summary").text
    assert not [b for b in browser.find_elements(By.CSS_SELECTOR, ".banner") if b.is_displayed() and b.text]  # no error shown
    # A child that ends while the page is open shows up there (the flow's events are pushed), as the API has it.
    done = f'#flow-children li[data-flow-job="{root}:3"][data-flow-status="completed"]'
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, done), timeout=30)
    with local_stack.client("uma") as uma:
        assert uma.get(f"/jobs/{root}:3").json()["data"]["status"] == "completed"
    assert "6 jobs, 4 finished" in browser.find_element(By.ID, "flow-summary").text
    shot(browser, shots, "job-flow-root")

    go(browser, local_stack, f"/job/{root}:0.0")
    until(browser, lambda b: b.find_elements(By.ID, "flow-parent") and b.find_elements(By.CSS_SELECTOR, "#flow-tree li.here"))
    assert browser.find_element(By.CSS_SELECTOR, "#flow-parent a").text == f"{root}:0"
    assert browser.find_element(By.CSS_SELECTOR, "#flow-tree li.here").get_attribute("data-flow-job") == f"{root}:0.0"
    assert browser.find_element(By.ID, "flow-root").text == root
    shot(browser, shots, "job-flow-child")
