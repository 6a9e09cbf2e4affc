"""Headless Chromium for the browser tests (Debian's ``chromium`` + ``chromium-driver``, driven by selenium).

``chrome()`` returns a configured WebDriver. Where the browser, its driver or selenium is missing the
calling test is skipped, except when ``CI`` or ``GROUNDKIT_REQUIRE_BROWSER`` is set: then it fails, so
CI never passes by silently skipping the browser checks (``.ci/run`` installs the packages).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,900")


def browser_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("GROUNDKIT_REQUIRE_BROWSER"))


def _unavailable(why: str):
    msg = f"headless browser unavailable: {why} (apt-get install chromium chromium-driver; pip install selenium)"
    if browser_required():
        pytest.fail(msg + " -- required because CI / GROUNDKIT_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(msg)


def chrome():
    """A headless Chromium WebDriver (1280x900, fresh profile, browser console log captured).

    Quit it when done (the ``user-data-dir`` is removed with ``driver.quit()`` via ``driver.gk_profile``)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        _unavailable("missing " + ", ".join(missing))
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        _unavailable(f"selenium not importable ({e})")
    profile = tempfile.mkdtemp(prefix="gk-chrome-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except Exception as e:  # a broken install must not pass as a skip in CI either
        shutil.rmtree(profile, ignore_errors=True)
        _unavailable(f"could not start chromium ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    quit_ = driver.quit

    def quit_and_clean():
        try:
            quit_()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    driver.gk_profile = Path(profile)
    driver.set_page_load_timeout(30)
    return driver


def console_errors(driver) -> list[dict]:
    """SEVERE entries of the browser console log (read since the last call)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def horizontal_overflow(driver) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no horizontal scrolling)."""
    return int(driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"))
