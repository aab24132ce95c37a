"""Buying a credit pack from the console, paid on a real local Stripe (localstripe).

A stack of its own, configured as an operator configures payments
(LIPSYNC_STRIPE_*), with localstripe's signed webhooks pointed at it: the person
presses Buy, pays on the checkout page, comes back to the console and sees the
pack's credits, granted once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.console.pages import Console, eventually
from tests.integration.harness import running_stack, stack_env
from tests.localstripe_server import SECRET_KEY, WEBHOOK_SECRET, running_localstripe

pytestmark = pytest.mark.integration


async def test_buying_a_pack_raises_the_balance_on_the_page(
    tmp_path: Path, browser: webdriver.Chrome, screenshots: Path
) -> None:
    async with running_localstripe() as stripe:
        env = stack_env(tmp_path)
        env.update(
            {
                "LIPSYNC_STRIPE_SECRET_KEY": SECRET_KEY,
                "LIPSYNC_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "LIPSYNC_STRIPE_API_BASE": stripe.base_url,
            }
        )
        with running_stack(tmp_path, env) as stack:
            await stripe.register_webhook(f"{stack.http_url}/api/v1/billing/stripe-webhook")
            console = Console(browser, stack.http_url, screenshots)
            console.sign_up_and_log_in()
            eventually(lambda: console.text("#api-credits") == "0", 10, "the balance")
            buy = eventually(
                lambda: next((b for b in console.visible("button") if b.text == "Buy"), None),
                10,
                "a Buy button",
            )
            label = buy.get_attribute("aria-label") or ""
            credits = label.removeprefix("Buy ").split(" ")[0]
            assert credits.isdigit(), label
            console.shot("checkout-packs")
            buy.click()
            # localstripe's checkout page, then back to the console.
            pay = eventually(
                lambda: next(
                    iter(browser.find_elements(By.XPATH, "//button[normalize-space()='Pay']")),
                    None,
                ),
                15,
                "the checkout page",
            )
            pay.click()
            eventually(lambda: "/console" in browser.current_url, 15, "the way back")
            eventually(lambda: console.text("#api-credits") == credits, 30, "the pack's credits")
            console.shot("checkout-paid")
            assert console.csp_violations() == []
