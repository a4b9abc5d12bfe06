// The only code that speaks HTTP to the dashboard listener: the API's own /v1 routes (the
// ones the CLI uses) through the session cookie, the CSRF header on every write, and the
// API's one-sentence errors turned into ApiError.

/** A refused or failed request: `message` is the API's sentence, `status` the HTTP status. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || "error";
  }
}

/** The session: {role: "admin"|"project", project, csrf, expires_at}, or null before login. */
export const session = {current: null};

const unauthorized = new Set();

/** Call `listener()` whenever a request answers 401 (the session expired or is gone). */
export function onUnauthorized(listener) {
  unauthorized.add(listener);
}

async function sentence(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return [body.error.message, body.error.code];
    if (body && typeof body.detail === "string") return [body.detail, "error"];
  } catch {
    // not JSON: a proxy's or a page's answer; say its status below
  }
  const first = text.trim().split("\n")[0].slice(0, 200);
  return [first || `The dashboard answered ${response.status} ${response.statusText}.`, "error"];
}

/**
 * Send a request; resolve to the parsed JSON answer (null for 204), raise ApiError with the
 * API's sentence otherwise. `body` is sent as JSON; writes carry X-CSRF-Token.
 */
export async function request(method, path, body) {
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && session.current) {
    headers["X-CSRF-Token"] = session.current.csrf;
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The dashboard cannot be reached; check that bungalowd runs (any bungalow command starts it), or run `bungalow dashboard` for a new link.");
  }
  if (response.status === 204) return null;
  if (!response.ok) {
    const [message, code] = await sentence(response);
    const error = new ApiError(response.status, message, code);
    if (response.status === 401 && !path.startsWith("/auth/")) {
      for (const listener of unauthorized) listener(error);
    }
    throw error;
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path) => request("DELETE", path);

/** "/v1/vms/" + the name, escaped. */
export const vmPath = (name, rest = "") => `/v1/vms/${encodeURIComponent(name)}${rest}`;

/**
 * A one-time ticket for a websocket: {ticket, expires_in, password?}. `purpose` is
 * "console", "exec" or "vnc" (vnc also gets the VNC password the daemon set).
 */
export function ticket(purpose, vm) {
  return post("/auth/tickets", {purpose, vm});
}

/** The websocket URL of a VM's route with a ticket, on this page's own origin. */
export function socketUrl(vm, route, ticketText) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${vmPath(vm, route)}?ticket=${encodeURIComponent(ticketText)}`;
}

/** Log in with the admin token or a project's bgw_ token; sets `session.current`. */
export async function login(token) {
  session.current = await request("POST", "/auth/login", {token});
  return session.current;
}

/** The session the cookie holds, or null (401). */
export async function resume() {
  try {
    session.current = await request("GET", "/auth/session");
  } catch (err) {
    if (err.status === 401) {
      session.current = null;
      return null;
    }
    throw err;
  }
  return session.current;
}

export async function logout() {
  try {
    await request("POST", "/auth/logout");
  } finally {
    session.current = null;
  }
}
