// API keys: create (the key shown once), list, revoke with a confirmation.
import { call } from "./api.js";
import { $, confirmAction, el, guarded, when } from "./dom.js";

const section = () => $("#keys");

export async function loadKeys() {
  await guarded(section(), async () => {
    const { data } = await call("GET", "/api/v1/keys");
    const rows = data.map((key) => {
      const label = key.name || key.prefix;
      const action = key.revoked
        ? el("td", { text: "" })
        : el(
            "td",
            {},
            el("button", {
              type: "button",
              text: "Revoke",
              "aria-label": `Revoke key ${label}`,
              onclick: () => revoke(key, label),
            }),
          );
      return el(
        "tr",
        { "data-key-id": key.key_id },
        el("td", { text: key.name || "(no name)" }),
        el("td", {}, el("code", { text: key.prefix })),
        el("td", { text: when(key.created_at) }),
        el("td", { text: when(key.last_used_at) }),
        el("td", { text: key.revoked ? "revoked" : "active" }),
        action,
      );
    });
    $("#key-rows").replaceChildren(...rows);
  });
}

async function revoke(key, label) {
  const sure = await confirmAction(
    `Revoke key ${label}? Programs using it stop working at once.`,
    "Revoke key",
  );
  if (!sure) return;
  await guarded(section(), () => call("DELETE", `/api/v1/keys/${encodeURIComponent(key.key_id)}`));
  await loadKeys();
}

function hideNewKey() {
  $("#new-key-value").value = "";
  $("#copy-status").textContent = "";
  $("#new-key").hidden = true;
}

export function setupKeys() {
  const form = $("#key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(section(), async () => {
      const name = $("#key-name").value.trim();
      const created = await call("POST", "/api/v1/keys", { body: name ? { name } : {} });
      form.reset();
      $("#new-key-value").value = created.key;
      $("#copy-status").textContent = "";
      $("#new-key").hidden = false;
      $("#new-key-value").select();
      await loadKeys();
    });
  });
  $("#copy-key").addEventListener("click", async () => {
    const field = $("#new-key-value");
    try {
      await navigator.clipboard.writeText(field.value);
      $("#copy-status").textContent = "The key is copied to the clipboard.";
    } catch {
      field.select();
      $("#copy-status").textContent = "Copying was refused by the browser: the key is selected, press Ctrl+C.";
    }
  });
  $("#dismiss-key").addEventListener("click", hideNewKey);
}

export function forgetKeys() {
  hideNewKey();
  $("#key-rows").replaceChildren();
}
