// xterm.js terminals (vendored @xterm/xterm and @xterm/addon-fit, loaded on first use) that
// fit their box, and the websocket close codes the dashboard uses.

import {ticket} from "./api.js";

let modules = null;

async function load() {
  if (!modules) {
    modules = Promise.all([
      import("/vendor/@xterm/xterm/lib/xterm.mjs"),
      import("/vendor/@xterm/addon-fit/lib/addon-fit.mjs"),
    ]);
  }
  const [xterm, fit] = await modules;
  return {Terminal: xterm.Terminal, FitAddon: fit.FitAddon};
}

/**
 * A terminal in `box` that keeps fitting it: {term, fit(), dispose()}. `scrollback` lines
 * are kept (a console's survive reconnections, as the terminal object stays).
 */
export async function makeTerminal(box, {scrollback = 5000} = {}) {
  const {Terminal, FitAddon} = await load();
  const term = new Terminal({
    scrollback, convertEol: false, cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace", fontSize: 14,
    // At line height 1 DejaVu Sans Mono's underscore falls below its cell and is cut off
    // (xterm.js draws each row in its own box): "a_b" showed as "a b".
    lineHeight: 1.2,
  });
  const fitter = new FitAddon();
  term.loadAddon(fitter);
  term.open(box);
  box.xterm = term; // for the browser tests: term.buffer holds the scrollback
  const fit = () => {
    if (box.offsetParent !== null) {
      try {
        fitter.fit();
      } catch {
        // not laid out yet
      }
    }
  };
  const observer = new ResizeObserver(fit);
  observer.observe(box);
  fit();
  return {term, fit, dispose() { observer.disconnect(); term.dispose(); }};
}

/** Why a websocket closed, in one sentence, from its close code (4401, 4403, 4000+HTTP status). */
export function closeReason(event, what) {
  if (event.code === 4401) return `The ${what}'s ticket was refused (used or expired); reconnect to get a new one.`;
  if (event.code === 4403) return `The ${what} was refused: this page's origin is not one the dashboard allows.`;
  if (event.reason) return event.reason;
  if (event.code >= 4000) return `The ${what} was refused (${event.code - 4000}).`;
  return `The ${what}'s connection closed.`;
}

/**
 * A websocket ticket for `purpose` on the VM, or null after saying why not through
 * `say("error", sentence)`.
 */
export async function ticketOrSay(purpose, vm, say) {
  try {
    return await ticket(purpose, vm);
  } catch (err) {
    say("error", err.message);
    return null;
  }
}

/** Close a websocket without its onclose running (it is being replaced); returns null. */
export function dropSocket(socket) {
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  return null;
}

/** A line in the terminal, dimmed, between the guest's own output. */
export function remark(term, text) {
  term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
}
