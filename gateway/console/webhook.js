// The webhook signing secret: hidden until asked for, rotated with a confirmation.
import { call } from "./api.js";
import { $, confirmAction, guarded } from "./dom.js";

const section = () => $("#webhook");

function showSecret(secret) {
  $("#secret-value").value = secret;
  $("#secret-box").hidden = false;
  $("#reveal-secret").textContent = "Hide secret";
}

export function hideSecret() {
  $("#secret-value").value = "";
  $("#secret-box").hidden = true;
  $("#reveal-secret").textContent = "Reveal secret";
}

export function setupWebhook() {
  $("#reveal-secret").addEventListener("click", () => {
    if (!$("#secret-box").hidden) {
      hideSecret();
      return;
    }
    guarded(section(), async () => showSecret((await call("GET", "/api/v1/webhook-secret")).secret));
  });
  $("#rotate-secret").addEventListener("click", async () => {
    const sure = await confirmAction(
      "Rotate the signing secret? Webhooks are signed with the new one from now on.",
      "Rotate secret",
    );
    if (!sure) return;
    await guarded(section(), async () =>
      showSecret((await call("POST", "/api/v1/webhook-secret/rotate")).secret),
    );
  });
}
