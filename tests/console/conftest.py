"""Fixtures of the browser tests: the real stack, its media host, and a headless Chromium.

The browser is Debian's `chromium` driven through its `chromedriver` (both from
apt, never a download of Selenium Manager's). Without them every test here is
skipped with the command that installs them; CI (.ci/run) installs them, and
under CI=true a missing browser is a failure, not a skip.
Screenshots go to bench-report/console/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.integration.conftest import Platform
from tests.integration.harness import MediaHost, running_stack, stack_env
from tests.media_fixtures import portrait_path, write_garbage, write_speech_wav

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench-report" / "console"
INSTALL_HINT = (
    "no headless Chromium found: install one with `apt-get install -y chromium chromium-driver` "
    "(Debian/Ubuntu), or set LIPSYNC_CHROMIUM and LIPSYNC_CHROMEDRIVER to their paths"
)
DESKTOP = (1280, 900)
PHONE = (390, 844)


def _found(variable: str, *names: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable]
    for name in names:
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    chromium = _found("LIPSYNC_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver = _found("LIPSYNC_CHROMEDRIVER", "chromedriver")
    if chromium is None or driver is None:
        # CI must run them (.ci/run installs the browser): there, a missing one fails.
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return chromium, driver


@pytest.fixture(scope="package")
def console_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("console-media")
    (root / "portrait.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(root / "speech-3s.wav", 3.2, silence_tail=0.6)
    write_speech_wav(root / "speech-40s.wav", 40.0)
    write_garbage(root / "garbage.mp3")
    return root


# Package scope: this stack stops once the browser tests are done, not at the very end.
@pytest.fixture(scope="package")
def platform(
    tmp_path_factory: pytest.TempPathFactory, console_media: Path, browser_paths: tuple[str, str]
) -> Iterator[Platform]:
    """The stack of `make run`, started only when a browser is there to use it."""
    data_dir = tmp_path_factory.mktemp("console-stack")
    env = stack_env(data_dir)
    media = MediaHost(console_media)
    try:
        with running_stack(data_dir, env) as stack:
            with httpx.Client(base_url=stack.http_url, timeout=30) as client:
                yield Platform(stack, stack.env, media, client)
    finally:
        media.close()


@pytest.fixture
def browser(browser_paths: tuple[str, str]) -> Iterator[webdriver.Chrome]:
    chromium, driver_path = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    # The console's own errors (CSP refusals included) are read back by the tests.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
