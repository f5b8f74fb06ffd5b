"""The dashboard end to end in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
Selenium): load with a Slack-style alert link, give the token, see the alert with its events and sample
posts, the chart drawn with alert episodes marked, and a search with highlighted matches. The screenshot is
saved to .artifacts/dashboard.png (CI keeps it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from monitor.api.app import create_app  # noqa: E402
from monitor.api.config import ApiConfig  # noqa: E402
from storage.database import open_existing_store, open_store  # noqa: E402
from storage.export import Pseudonymizer  # noqa: E402
from tests.research_fixtures import add_detector_state_and_alert, build_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / ".artifacts" / "dashboard.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "browser-test-token"


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium / chromium-driver missing: .ci/run installs them with apt-get")
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--lang=ja-JP"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(sqlite_url):
    from servers import serving

    engine = open_store(sqlite_url)
    build_store(engine)
    add_detector_state_and_alert(engine)
    engine.dispose()
    engine = open_existing_store(sqlite_url)
    app = create_app(engine, ApiConfig(tokens=TOKEN), pseudonymizer=Pseudonymizer(b"browser-test-pseudonym-key"))
    with serving(app) as base:
        yield base
    engine.dispose()


def test_dashboard_in_headless_chromium(browser, server):
    wait = WebDriverWait(browser, 20)
    # the link a Slack alert message carries ([alerts] dashboard_url + ?broker=...&since=...)
    browser.get(f"{server}/?broker={quote('楽天証券')}&since=2025-03-19T05%3A50%3A00%2B00%3A00")
    token = wait.until(EC.visibility_of_element_located((By.ID, "token")))
    token.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")

    # landed on the alert: its events and sample posts
    assert "楽天証券" in browser.find_element(By.ID, "alert-title").text
    events = browser.find_elements(By.CSS_SELECTOR, "#alert-events tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[0].text for row in events] == ["open", "update"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#alert-samples li")) == 3

    # the chart has drawn: a counts line with many points, the expected line, the alert episode
    lines = browser.find_elements(By.CSS_SELECTOR, "#chart polyline.series")
    assert lines and all(len(line.get_attribute("points").split()) > 24 for line in lines)
    assert browser.find_elements(By.CSS_SELECTOR, "#chart polyline.expected")
    episodes = browser.find_elements(By.CSS_SELECTOR, "#chart rect.episode")
    assert episodes and float(episodes[0].get_attribute("width")) > 0

    # the #alert= form of link opens the alert too
    browser.get(f"{server}/#alert={quote('broker:楽天証券')}")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert "楽天証券" in browser.find_element(By.ID, "alert-title").text

    # search with highlighted matches
    box = browser.find_element(By.ID, "q")
    box.send_keys("約定")
    browser.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 3)
    marks = browser.find_elements(By.CSS_SELECTOR, "#results mark")
    assert marks and {m.text for m in marks} == {"約定"}

    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
