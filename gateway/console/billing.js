// Balances, credit packs (Buy when payments are configured) and usage history.
import { call } from "./api.js";
import { $, el, guarded, when } from "./dom.js";

let usageCursor = null;

export async function loadBalances() {
  await guarded($("#balances"), async () => {
    const balance = await call("GET", "/api/v1/balance");
    $("#api-credits").textContent = String(balance.api_credits);
    $("#user-credits").textContent = String(balance.user_credits);
  });
}

export async function loadPacks() {
  const section = $("#balances");
  await guarded(section, async () => {
    const pricing = await call("GET", "/api/v1/pricing", { auth: false });
    const buyable = Boolean(pricing.checkout_enabled);
    $("#packs-off").hidden = buyable;
    const items = pricing.credit_packs.map((pack, index) => {
      const text = `${pack.credits} credits for $${pack.price_usd} ($${pack.price_per_credit_usd} a credit)`;
      const buy = buyable
        ? el("button", {
            type: "button",
            text: "Buy",
            "aria-label": `Buy ${pack.credits} credits for $${pack.price_usd}`,
            onclick: () => buyPack(index),
          })
        : null;
      return el("li", {}, el("span", { text }), buy);
    });
    $("#packs").replaceChildren(...items);
  });
}

async function buyPack(index) {
  await guarded($("#balances"), async () => {
    const checkout = await call("POST", "/api/v1/billing/checkout", { body: { pack: index } });
    window.location.assign(checkout.checkout_url);
  });
}

function usageText(entry) {
  const what = entry.job_id
    ? `${entry.kind}: ${entry.model ?? "job"} ${entry.job_id.slice(0, 8)}` +
      (entry.billed_seconds ? `, ${entry.billed_seconds} s at ${entry.resolution}` : "")
    : entry.kind;
  return entry.reason ? `${what} (${entry.reason})` : what;
}

export async function loadUsage({ more = false } = {}) {
  await guarded($("#usage"), async () => {
    const query = new URLSearchParams({ limit: "20" });
    if (more && usageCursor) query.set("cursor", usageCursor);
    const page = await call("GET", `/api/v1/usage?${query}`);
    const rows = page.data.map((entry) =>
      el(
        "tr",
        {},
        el("td", { text: when(entry.created_at) }),
        el("td", { text: usageText(entry) }),
        el("td", { text: entry.wallet }),
        el("td", { text: String(entry.credits) }),
      ),
    );
    if (more) $("#usage-rows").append(...rows);
    else $("#usage-rows").replaceChildren(...rows);
    usageCursor = page.next_cursor;
    $("#more-usage").hidden = !usageCursor;
  });
}

export function setupBilling() {
  $("#refresh-balances").addEventListener("click", () => {
    loadBalances();
    loadUsage();
  });
  $("#more-usage").addEventListener("click", () => loadUsage({ more: true }));
}

export function forgetBilling() {
  $("#api-credits").textContent = "-";
  $("#user-credits").textContent = "-";
  $("#usage-rows").replaceChildren();
  usageCursor = null;
}
