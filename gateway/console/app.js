// The console's entry point: which view shows, and what loads after login.
import { onSessionExpired, token } from "./api.js";
import { setupAuth } from "./auth.js";
import { forgetBilling, loadBalances, loadPacks, loadUsage, setupBilling } from "./billing.js";
import { $ } from "./dom.js";
import { JOB_ENDED, forgetJobs, loadJobs, setupJobs } from "./jobs.js";
import { forgetKeys, loadKeys, setupKeys } from "./keys.js";
import { setupNewJob } from "./newjob.js";
import { hideSecret, setupWebhook } from "./webhook.js";

function notify(text) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.hidden = !text;
}

function signedIn() {
  notify("");
  $("#signed-out").hidden = true;
  $("#signed-in").hidden = false;
  $("#logout").hidden = false;
  loadBalances();
  loadPacks();
  loadKeys();
  loadJobs();
  loadUsage();
}

function signedOut(message) {
  forgetKeys();
  forgetJobs();
  forgetBilling();
  hideSecret();
  $("#signed-in").hidden = true;
  $("#logout").hidden = true;
  $("#signed-out").hidden = false;
  notify(message);
}

// Back from Stripe Checkout: gateway/routes_billing.py's success and cancel URLs are
// /console?checkout=success|canceled. Stripe's webhook grants the credits a moment
// later, so the balance is read again for a while.
function returnFromCheckout() {
  const back = new URLSearchParams(window.location.search).get("checkout");
  if (!back) return;
  window.history.replaceState(null, "", window.location.pathname);
  if (back !== "success") {
    notify("Payment canceled; nothing was charged.");
    return;
  }
  notify("Payment received: your credits appear in a few seconds.");
  let tries = 15;
  const again = () => {
    if (!token() || tries-- <= 0) return;
    loadBalances();
    loadUsage();
    setTimeout(again, 2000);
  };
  setTimeout(again, 2000);
}

function start() {
  setupAuth({ signedIn, signedOut, notify });
  setupKeys();
  setupBilling();
  setupJobs();
  setupNewJob();
  setupWebhook();
  document.addEventListener(JOB_ENDED, () => {
    loadBalances();
    loadUsage();
  });
  onSessionExpired(() => signedOut("Your session has ended; log in again."));
  if (token()) signedIn();
  returnFromCheckout();
  document.body.dataset.ready = "true";
}

start();
