// Small DOM helpers: elements built with textContent only (never parsed as HTML), so
// nothing the API returns can become markup.

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// The error line of a section (its `[data-error]`), emptied by showError(section, "").
export function showError(section, error) {
  const line = $("[data-error]", section);
  line.textContent = error ? (error.message ?? String(error)) : "";
}

// Runs an action of a section, showing its error there instead of throwing.
export async function guarded(section, action) {
  showError(section, "");
  try {
    return await action();
  } catch (error) {
    showError(section, error);
    return undefined;
  }
}

export function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

// A modal yes/no question in the page's own <dialog>; resolves true on Confirm.
export function confirmAction(text, confirmLabel) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
