"""The web console in a real headless Chromium against the real stack.

What a new person does: sign up, log in, create a key and use it, revoke it,
see credits and packs, watch jobs (progress, cancel, a playable video, a failed
job's error, delete), reveal and rotate the webhook secret, log out; on a
desktop and a phone-sized window. Every step goes through controls found by
their accessible names, and no step may trip the page's Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.console.conftest import DESKTOP, PHONE
from tests.console.pages import PASSWORD, Console, eventually
from tests.integration.conftest import Platform
from tests.integration.harness import bearer, ctl, wait_until_finished

pytestmark = pytest.mark.integration


@pytest.fixture
def console(platform: Platform, browser: webdriver.Chrome, screenshots: Path) -> Iterator[Console]:
    page = Console(browser, platform.stack.http_url, screenshots)
    yield page
    assert page.csp_violations() == []


def grant(platform: Platform, console: Console, credits: int) -> str:
    account_id = console.account_id(platform.env)
    ctl(platform.env, "credits", "grant", "--account", account_id, "--amount", str(credits),
        "--reason", "welcome credits")  # fmt: skip
    return account_id


def api_key(platform: Platform, console: Console) -> str:
    """A key of the console's account, made the way a script of that person would."""
    token = platform.client.post(
        "/api/v1/auth/login", json={"email": console.email, "password": PASSWORD}
    ).json()["token"]
    created = platform.client.post("/api/v1/keys", json={"name": "script"}, headers=bearer(token))
    return str(created.json()["key"])


def image_job(platform: Platform, key: str, audio: str, resolution: str = "480p") -> str:
    created = platform.client.post(
        "/api/v1/lipsync-image",
        json={
            "formState": {
                "image": f"{platform.media.url}/portrait.jpg",
                "audio": f"{platform.media.url}/{audio}",
                "resolution": resolution,
            }
        },
        headers=bearer(key),
    )
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


def test_signed_out_page_names_every_control_and_shows_api_errors(console: Console) -> None:
    console.open()
    assert console.unnamed_controls() == []
    assert (console.control("API docs", "a").get_attribute("href") or "").endswith("/docs")
    console.shot("01-signed-out-1280")

    login = console.driver.find_element(By.ID, "login-form")
    login.find_element(By.NAME, "email").send_keys("nobody@example.com")
    login.find_element(By.NAME, "password").send_keys("wrong password")
    console.click("Log in")
    # The API's 401 problem, in words, in the form's alert.
    message = console.wait_text("#login-form [data-error]", "Unauthorized")
    assert "email or password" in message.lower() or "credential" in message.lower(), message


def test_a_new_person_gets_a_key_uses_it_and_revokes_it(
    platform: Platform, console: Console
) -> None:
    console.sign_up_and_log_in()
    console.shot("02-signed-in-1280")

    # Signing up twice with the same email: the 409 in words.
    console.script("sessionStorage.clear()")
    console.open()
    signup = console.driver.find_element(By.ID, "signup-form")
    signup.find_element(By.NAME, "email").send_keys(console.email)
    signup.find_element(By.NAME, "password").send_keys(PASSWORD)
    console.click("Sign up")
    assert console.wait_text("#signup-form [data-error]", "Conflict")
    login = console.driver.find_element(By.ID, "login-form")
    login.find_element(By.NAME, "email").send_keys(console.email)
    login.find_element(By.NAME, "password").send_keys(PASSWORD)
    console.click("Log in")

    console.fill("Name (optional)", "laptop")
    console.click("Create key")
    field = console.control("Your new API key", "input")
    key = eventually(lambda: field.get_attribute("value"), 10, "the new key")
    assert key.startswith("sk_")
    assert "will not be shown again" in console.text("#new-key .warning")
    # The copy button puts exactly the key on the clipboard.
    console.allow_clipboard()
    console.click("Copy key")
    console.wait_text("#copy-status", "copied to the clipboard")
    assert console.clipboard() == key
    console.shot("03-new-key-1280")

    # The key works against the API, and its row says when it was made.
    assert httpx.get(f"{console.base_url}/api/v1/balance", headers=bearer(key)).status_code == 200
    row = console.wait_text("#key-rows", "laptop")
    assert key[:12] not in row or key not in row

    # Shown once: dismissed, or after a reload, the key is nowhere on the page.
    console.click("I have saved the key")
    console.driver.refresh()
    eventually(lambda: console.visible("#signed-in"), 10, "still logged in after a reload")
    console.wait_text("#key-rows", "laptop")
    assert key not in console.driver.page_source

    # Revoking asks first; Cancel keeps the key.
    console.click("Revoke key laptop")
    assert "Revoke key laptop?" in console.confirm("Cancel")
    assert "active" in console.text("#key-rows")
    console.click("Revoke key laptop")
    console.confirm("Revoke key")
    console.wait_text("#key-rows", "revoked")
    console.shot("04-key-revoked-1280")
    eventually(
        lambda: (
            httpx.get(f"{console.base_url}/api/v1/balance", headers=bearer(key)).status_code == 401
        ),
        2,
        "the revoked key to be refused",
    )


def test_balances_packs_and_usage(platform: Platform, console: Console) -> None:
    console.sign_up_and_log_in()
    assert console.text("#api-credits") == "0"
    grant(platform, console, 500)
    console.click("Refresh credits")
    console.wait_text("#api-credits", "500")
    assert console.text("#user-credits") == "0"
    console.wait_text("#usage-rows", "welcome credits")
    assert not console.visible("#more-usage")

    # Usage comes 20 entries a page, newest first; the rest on request.
    account_id = console.account_id(platform.env)
    for n in range(20):
        ctl(platform.env, "credits", "grant", "--account", account_id, "--amount", "1",
            "--reason", f"top-up {n}")  # fmt: skip
    console.click("Refresh credits")
    console.wait_text("#api-credits", "520")

    def rows() -> list[WebElement]:
        return list(console.driver.find_elements(By.CSS_SELECTOR, "#usage-rows tr"))

    eventually(lambda: len(rows()) == 20 and "top-up 19" in rows()[0].text, 10, "the first page")
    console.click("Load more usage")
    eventually(lambda: len(rows()) == 21, 10, "the second page")
    assert "welcome credits" in rows()[-1].text
    assert not console.visible("#more-usage")

    pricing = httpx.get(f"{console.base_url}/api/v1/pricing").json()
    packs = console.driver.find_elements(By.CSS_SELECTOR, "#packs li")
    assert len(packs) == len(pricing["credit_packs"]) > 0
    first = pricing["credit_packs"][0]
    assert f"{first['credits']} credits" in packs[0].text
    buy_buttons = console.visible("#packs button")
    if pricing.get("checkout_enabled"):
        names = [button.accessible_name for button in buy_buttons]
        assert len(names) == len(packs) and all(name.startswith("Buy ") for name in names)
    else:
        # Without a payment provider there is nothing to click, and the page says so.
        assert buy_buttons == []
        assert console.visible("#packs-off")


def test_jobs_progress_cancel_video_failure_and_delete(
    platform: Platform, console: Console, tmp_path: Path
) -> None:
    console.sign_up_and_log_in()
    grant(platform, console, 1000)
    key = api_key(platform, console)
    done = image_job(platform, key, "speech-3s.wav")
    broken = image_job(platform, key, "garbage.mp3")
    for job_id in (done, broken):
        wait_until_finished(platform.client, job_id, key, timeout_s=120)
    long = image_job(platform, key, "speech-40s.wav", "720p")

    console.click("Refresh jobs")

    def three_cards() -> list[WebElement] | None:
        found = console.driver.find_elements(By.CSS_SELECTOR, "#job-list li")
        return found if len(found) == 3 else None

    cards = eventually(three_cards, 10, "three jobs")
    # Newest first.
    assert [card.get_attribute("data-job-id") for card in cards] == [long, broken, done]

    # Progress moves on the page while the job renders (polled, no reload).
    running = console.job_card(long)
    eventually(lambda: "rendering" in running.text, 90, "the long job to render")
    bar = running.find_element(By.TAG_NAME, "progress")
    assert bar.accessible_name == f"Progress of job {long[:8]}"
    console.shot("05-job-rendering-1280")
    console.click(f"Cancel job {long[:8]}")
    eventually(lambda: "Canceled" in console.job_card(long).text, 10, "the job to be canceled")
    assert platform.client.get(f"/api/v1/jobs/{long}", headers=bearer(key)).json()["status"] == (
        "canceled"
    )

    # The failed job says why, in the API's words.
    error = platform.client.get(f"/api/v1/jobs/{broken}", headers=bearer(key)).json()["error"]
    assert error
    assert f"Failed: {error}" in console.job_card(broken).text

    # The completed job plays, and lasts as long as its audio (3.2 s).
    video = console.job_card(done).find_element(By.TAG_NAME, "video")
    assert video.accessible_name == f"Video of job {done[:8]}"
    duration = console.video_duration(video)
    assert abs(duration - 3.2) < 0.1, duration
    console.script("arguments[0].muted = true; arguments[0].play()", video)
    eventually(lambda: console.script("return arguments[0].currentTime", video) > 0.2, 10, "play")
    download = console.control(f"Download the video of job {done[:8]}", "a")
    output = str(download.get_attribute("href"))
    console.shot("06-jobs-1280")
    assert console.unnamed_controls() == []
    # The same cards on a phone: nothing wider than the window, the video shrinks to fit.
    console.driver.set_window_size(*PHONE)
    console.script("arguments[0].scrollIntoView()", console.job_card(done))
    assert not console.overflows()
    console.shot("06-jobs-390")
    console.driver.set_window_size(*DESKTOP)

    # Delete asks first, then the card says so and the output is gone.
    console.click(f"Delete job {done[:8]}")
    assert "deleted for good" in console.confirm("Delete job")
    eventually(lambda: "Deleted" in console.job_card(done).text, 10, "the job to be deleted")
    assert httpx.get(output).status_code == 404

    # A job canceled elsewhere (another tab, a script) while the page still shows it
    # running: the page's Cancel meets the API's 409, shown in words.
    again = image_job(platform, key, "speech-40s.wav", "720p")
    renders = int(console.text_attribute("#job-list", "data-renders"))
    console.click("Refresh jobs")
    eventually(
        lambda: int(console.text_attribute("#job-list", "data-renders")) > renders, 5, "a refresh"
    )
    console.job_card(again)
    assert platform.client.post(f"/api/v1/jobs/{again}/cancel", headers=bearer(key)).is_success
    console.click(f"Cancel job {again[:8]}")
    assert "Conflict" in console.wait_text("#jobs [data-error]", "Conflict")
    eventually(lambda: "Canceled" in console.job_card(again).text, 10, "the second cancel")


def test_new_job_from_files_on_the_computer(
    platform: Platform, console: Console, console_media: Path
) -> None:
    console.sign_up_and_log_in()
    token = console.session_token()
    assert token
    audio = console_media / "speech-3s.wav"
    probe = platform.client.post(
        "/api/v1/uploads",
        files={"file": ("speech.wav", audio.read_bytes(), "audio/wav")},
        headers=bearer(token),
    )
    if probe.status_code == 404:
        pytest.skip("uploads are not in this gateway yet: POST /api/v1/uploads answers 404")
    grant(platform, console, 100)

    # Without files, the form says which are missing.
    console.click("Upload and start")
    console.wait_text("#job-form [data-error]", "Choose a file for: image, audio")

    console.control("Image (PNG, JPEG, WebP)", "input").send_keys(
        str(console_media / "portrait.jpg")
    )
    console.control("Audio (MP3, WAV, M4A, OGG, FLAC)", "input").send_keys(str(audio))
    console.click("Upload and start")
    status = console.wait_text("#job-form-status", "started", timeout_s=30)
    short_id = status.split()[1]
    card = eventually(
        lambda: next((c for c in console.visible("#job-list li") if short_id in c.text), None),
        10,
        "the new job's card",
    )
    job_id = str(card.get_attribute("data-job-id"))
    eventually(
        lambda: "completed" in console.job_card(job_id).text.lower(), 120, "the job to complete"
    )
    video = console.job_card(job_id).find_element(By.TAG_NAME, "video")
    duration = console.video_duration(video)
    assert abs(duration - 3.2) < 0.1, duration
    console.shot("11-new-job-1280")


def test_webhook_secret_reveal_and_rotate(platform: Platform, console: Console) -> None:
    console.sign_up_and_log_in()
    token = console.session_token()
    assert token
    assert not console.visible("#secret-box")
    console.click("Reveal secret")
    field = console.control("Signing secret", "input")
    first = eventually(lambda: field.get_attribute("value"), 5, "the secret")
    assert first.startswith("whsec_")
    assert (
        first
        == platform.client.get("/api/v1/webhook-secret", headers=bearer(token)).json()["secret"]
    )
    console.click("Rotate secret")
    console.confirm("Rotate secret")

    def new_secret() -> str | None:
        value = field.get_attribute("value")
        return value if value and value != first else None

    rotated = eventually(new_secret, 5, "a new secret")
    assert (
        rotated
        == platform.client.get("/api/v1/webhook-secret", headers=bearer(token)).json()["secret"]
    )
    console.click("Hide secret")
    assert not console.visible("#secret-box")
    assert rotated not in console.driver.page_source


def test_logout_ends_the_session(platform: Platform, console: Console) -> None:
    console.sign_up_and_log_in()
    token = console.session_token()
    assert token
    assert platform.client.get("/api/v1/keys", headers=bearer(token)).status_code == 200
    console.click("Log out")
    console.wait_text("#notice", "logged out")
    assert console.visible("#login-form") and not console.visible("#signed-in")
    assert console.session_token() is None
    assert platform.client.get("/api/v1/keys", headers=bearer(token)).status_code == 401
    # A reload stays logged out.
    console.driver.refresh()
    eventually(lambda: console.visible("#login-form"), 5, "the login form")


@pytest.mark.parametrize(("width", "height"), [DESKTOP, PHONE], ids=["1280", "390"])
def test_layout_fits_the_window(
    platform: Platform, console: Console, width: int, height: int
) -> None:
    console.driver.set_window_size(width, height)
    console.open()
    inner = console.script("return window.innerWidth")
    assert abs(inner - width) < 40, inner
    assert not console.overflows()
    console.shot(f"07-signed-out-{width}")
    console.sign_up_and_log_in()
    grant(platform, console, 100)
    console.fill("Name (optional)", "a key with a rather long name for a small screen")
    console.click("Create key")
    console.control("Your new API key", "input")
    console.click("Refresh credits")
    console.wait_text("#api-credits", "100")
    assert not console.overflows()
    assert console.unnamed_controls() == []
    console.driver.save_screenshot(str(console.shots / f"08-signed-in-{width}.png"))
    # The whole page, not only the first screen, for a person to look at.
    full = console.script("return document.documentElement.scrollHeight")
    console.driver.set_window_size(width, min(int(full) + 200, 8000))
    console.shot(f"09-signed-in-full-{width}")


def test_docs_page_renders_from_local_assets(console: Console) -> None:
    console.driver.get(console.base_url + "/docs")
    title = eventually(
        lambda: (found := console.visible(".swagger-ui .info .title")) and found[0].text,
        20,
        "Swagger UI",
    )
    assert "Lip-sync API" in title
    assert console.visible(".opblock")
    console.shot("10-docs-1280")
