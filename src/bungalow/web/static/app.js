// The dashboard's single page: hash routes, the session, the live stream.
//
//   #/login            token form (where any 401 leads)
//   #/vms              the VM list          #/new     the create dialog
//   #/vms/NAME[/TAB]   one VM: overview, console, shell, screen, snapshots, limits, events
//   #/host  #/sprawl  #/costs
//
// Each view is an ES module exporting render(main, params) that returns a cleanup function
// (closing its sockets and subscriptions) called when the route changes.

import {logout, onUnauthorized, resume, session} from "./js/api.js";
import {connect, disconnect} from "./js/live.js";
import {fill, h, notice} from "./js/dom.js";

const ROUTES = [
  [/^#\/login$/, "login", () => ({})],
  [/^#\/vms$/, "vms", () => ({})],
  [/^#\/new$/, "create", () => ({})],
  [/^#\/vms\/([^/]+)(?:\/([a-z]+))?$/, "vm", (m) => ({name: decodeURIComponent(m[1]), tab: m[2] || "overview"})],
  [/^#\/host$/, "host", () => ({})],
  [/^#\/sprawl$/, "sprawl", () => ({})],
  [/^#\/costs$/, "costs", () => ({})],
];

const main = document.getElementById("view");
let cleanup = () => {};
let afterLogin = "#/vms";
let shown = {hash: null, view: null, name: null};

function match(hash) {
  for (const [pattern, view, params] of ROUTES) {
    const m = pattern.exec(hash);
    if (m) return [view, params(m)];
  }
  return [null, {}];
}

async function route() {
  const hash = location.hash || "#/vms";
  if (!session.current && hash !== "#/login") {
    afterLogin = hash;
    location.hash = "#/login";
    return;
  }
  const [view, params] = match(hash);
  if (!view) {
    location.hash = "#/vms";
    return;
  }
  // Switching tabs of one VM keeps its page (and its terminals' scrollback).
  if (view === "vm" && shown.view === "vm" && shown.name === params.name && main.switchTab) {
    shown.hash = hash;
    main.switchTab(params.tab);
    return;
  }
  cleanup();
  cleanup = () => {};
  main.switchTab = null;
  shown = {hash, view, name: params.name};
  markNav(hash);
  if (view !== "login") notice(""); // the login view keeps saying why it is shown
  fill(main, h("p", {class: "muted"}, "Loading…"));
  try {
    const module = await import(`./js/views/${view}.js`);
    if (shown.hash !== hash) return; // the user moved on meanwhile
    const done = await module.render(main, params, {loggedIn, afterLogin: () => afterLogin});
    if (shown.hash === hash) cleanup = done || (() => {});
    else if (done) done();
  } catch (err) {
    if (err && err.status === 401) return; // onUnauthorized leads to the login view
    console.error(err);
    fill(main, h("p", {class: "error", role: "alert", "data-testid": "view-error"},
                 err && err.message ? err.message : String(err)));
  }
}

function markNav(hash) {
  for (const link of document.querySelectorAll("#nav a")) {
    const on = hash === link.getAttribute("href")
      || (link.getAttribute("href") === "#/vms" && hash.startsWith("#/vms/"));
    if (on) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showChrome(on) {
  document.getElementById("nav").hidden = !on;
  document.getElementById("who").hidden = !on;
  const role = document.getElementById("role");
  const s = session.current;
  role.textContent = !s ? "" : s.role === "admin" ? "admin" : `project ${s.project}`;
}

/** After a login or a resumed session: the header, the live stream, then where the user was going. */
function loggedIn() {
  showChrome(true);
  connect(sessionLost);
  const target = afterLogin && afterLogin !== "#/login" ? afterLogin : "#/vms";
  afterLogin = "#/vms";
  if (location.hash === target) route();
  else location.hash = target;
}

function sessionLost() {
  if (!session.current && location.hash === "#/login") return;
  session.current = null;
  disconnect();
  showChrome(false);
  if (location.hash !== "#/login") afterLogin = location.hash;
  location.hash = "#/login";
  notice("Your session has ended; log in again.");
}

onUnauthorized(sessionLost);

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await logout();
  } catch {
    // the cookie is dropped either way; the login view is where we go
  }
  disconnect();
  showChrome(false);
  afterLogin = "#/vms";
  location.hash = "#/login";
});

window.addEventListener("hashchange", route);

async function start() {
  try {
    await resume();
  } catch (err) {
    notice(err.message);
  }
  if (session.current) {
    if (location.hash && location.hash !== "#/login") afterLogin = location.hash;
    loggedIn();
    return;
  }
  route();
}

start();
