"""The console as a person sees it: controls found by their accessible names.

Every lookup goes through the name a screen reader would announce (WebDriver's
computed accessible name), so a control without one cannot be used by the
tests either.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.integration.harness import ctl

T = TypeVar("T")
CONTROLS = "button, input:not([type=hidden]), select, textarea, a[href], video"
PASSWORD = "correct horse battery"


def eventually(check: Callable[[], T | None], timeout_s: float = 10, what: str = "") -> T:
    """The first truthy answer of `check`, polled; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except StaleElementReferenceException as error:
            last_error = error
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from last_error


class Console:
    def __init__(self, driver: Chrome, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        self.email = f"person-{uuid.uuid4().hex[:10]}@example.com"

    def open(self, path: str = "/") -> None:
        self.driver.get(self.base_url + path)
        eventually(lambda: self.driver.find_element(By.CSS_SELECTOR, "body[data-ready]"), 10, "JS")

    # Finding things -------------------------------------------------------

    def visible(self, css: str = CONTROLS, root: WebElement | None = None) -> list[WebElement]:
        scope: Any = root or self.driver
        return [e for e in scope.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]

    def control(self, name: str, css: str = CONTROLS, timeout_s: float = 10) -> WebElement:
        """The visible control whose accessible name is exactly `name`."""

        def find() -> WebElement | None:
            for element in self.visible(css):
                if element.accessible_name == name:
                    return element
            return None

        return eventually(find, timeout_s, f"a control named {name!r}")

    def click(self, name: str, timeout_s: float = 10) -> None:
        self.control(name, "button, a[href]", timeout_s).click()

    def fill(self, label: str, value: str) -> None:
        field = self.control(label, "input, textarea")
        field.clear()
        field.send_keys(value)

    def text(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def text_attribute(self, css: str, name: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).get_attribute(name) or "")

    def wait_text(self, css: str, contains: str, timeout_s: float = 10) -> str:
        def check() -> str | None:
            text = self.text(css)
            return text if contains in text else None

        return eventually(check, timeout_s, f"{contains!r} in {css}")

    def confirm(self, answer: str) -> str:
        """Answer the page's confirmation dialog; returns its question."""
        dialog = eventually(lambda: self.visible("dialog[open]"), 5, "the confirmation")[0]
        question = str(dialog.find_element(By.ID, "confirm-text").text)
        self.control(answer, "dialog[open] button").click()
        eventually(lambda: not self.visible("dialog[open]"), 5, "the dialog to close")
        return question

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    # What a person does ---------------------------------------------------

    def sign_up_and_log_in(self) -> None:
        self.open()
        signup = self.driver.find_element(By.ID, "signup-form")
        self._form_fill(signup, self.email, PASSWORD)
        self.control("Sign up", "button").click()
        self.wait_text("#notice", "Account created")
        login = self.driver.find_element(By.ID, "login-form")
        # The email is filled in for the person; only the password is typed.
        assert login.find_element(By.NAME, "email").get_attribute("value") == self.email
        login.find_element(By.NAME, "password").send_keys(PASSWORD)
        self.control("Log in", "button").click()
        eventually(lambda: self.visible("#signed-in"), 10, "the signed-in view")

    def _form_fill(self, form: WebElement, email: str, password: str) -> None:
        for field, value in (("email", email), ("password", password)):
            element = form.find_element(By.NAME, field)
            assert element.accessible_name, field
            element.clear()
            element.send_keys(value)

    def allow_clipboard(self) -> None:
        """Grant the page the clipboard, as a person's click on "Allow" would."""
        origin = self.base_url
        self.driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
        )

    def clipboard(self) -> str:
        return str(
            self.driver.execute_async_script(
                "const done = arguments[0];"
                "navigator.clipboard.readText().then(done, (e) => done('refused: ' + e));"
            )
        )

    def session_token(self) -> str | None:
        token = self.script("return sessionStorage.getItem('lipsync.session')")
        return str(token) if token else None

    def account_id(self, env: dict[str, str]) -> str:
        accounts = ctl(env, "account", "list", "--limit", "1000")["data"]
        return str(next(a["account_id"] for a in accounts if a["email"] == self.email))

    def job_card(self, job_id: str) -> WebElement:
        return eventually(
            lambda: self.driver.find_element(By.CSS_SELECTOR, f'li[data-job-id="{job_id}"]'),
            10,
            f"the card of job {job_id}",
        )

    def video_duration(self, video: WebElement) -> float:
        """The duration the browser reads from the video's own metadata, in seconds."""
        duration = eventually(
            lambda: self.script(
                "return arguments[0].readyState >= 1 && arguments[0].duration", video
            ),
            20,
            "the video's metadata",
        )
        return float(duration)

    def csp_violations(self) -> list[str]:
        """Messages of the browser's console about a refused script, style or request."""
        return [
            str(entry["message"])
            for entry in self.driver.get_log("browser")
            if "Content Security Policy" in str(entry["message"])
        ]

    def unnamed_controls(self) -> list[str]:
        """The outer HTML of every visible control that has no accessible name."""
        return [
            str(element.get_attribute("outerHTML"))[:120]
            for element in self.visible()
            if not (element.accessible_name or "").strip()
        ]

    def overflows(self) -> bool:
        """Whether the page is wider than the window (sideways scrolling)."""
        return bool(
            self.script("return document.documentElement.scrollWidth > window.innerWidth + 1")
        )
