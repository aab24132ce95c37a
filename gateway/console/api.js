// The REST API as the console uses it: the session token, JSON, and problems in words.
//
// The token is kept in sessionStorage: it survives a reload of the tab (a person
// who presses F5 stays logged in) but not the tab itself, is never sent to the
// server except in the Authorization header, and is never in a cookie, so no
// other site can make the browser use it (no CSRF). The page's strict CSP is what
// keeps scripts that could read it out.

const TOKEN = "lipsync.session";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN, value);
  else sessionStorage.removeItem(TOKEN);
}

// An API error, with a message a person can read.
export class ApiError extends Error {
  constructor(status, problem) {
    super(describe(status, problem));
    this.status = status;
    this.code = problem?.code ?? "";
  }
}

function describe(status, problem) {
  if (!problem) return `The server answered ${status} without an explanation; try again.`;
  const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  const parts = [problem.title, problem.detail, ...fields].filter(Boolean);
  const unique = parts.filter((part, i) => parts.indexOf(part) === i);
  return unique.length ? unique.join(". ") : `The server answered ${status}.`;
}

// Listeners told when the session is no longer valid (a 401 on a session call).
const expired = [];
export function onSessionExpired(listener) {
  expired.push(listener);
}

export async function call(method, path, { body, form, auth = true } = {}) {
  const headers = {};
  if (auth && token()) headers.Authorization = `Bearer ${token()}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch {
    throw new ApiError(0, { title: "The server cannot be reached", detail: "check your connection and try again" });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    if (response.status === 401 && auth && token()) {
      setToken(null);
      expired.forEach((listener) => listener());
    }
    throw new ApiError(response.status, parsed);
  }
  return parsed;
}
