// The console tab: the VM's serial console in xterm.js over /v1/vms/NAME/console (binary
// frames both ways), reconnecting after a drop with the scrollback kept.

import {socketUrl} from "../api.js";
import {fill, h, statusLine} from "../dom.js";
import {closeReason, dropSocket, makeTerminal, remark, ticketOrSay} from "../terminal.js";

export async function mount(panel, ctx) {
  const box = h("div", {class: "terminal", "data-testid": "console-terminal"});
  const status = statusLine("console-status", "connecting");
  const reconnect = h("button", {type: "button", "data-testid": "console-reconnect",
                                 onclick: () => { delay = 0; open(); }}, "Reconnect");
  fill(panel, h("div", {class: "row"}, status, reconnect), box,
       h("p", {class: "muted small"}, "The VM's serial console (ttyS0). It reconnects by itself after a drop; what was shown stays."));
  const {term, fit, dispose} = await makeTerminal(box);
  const encoder = new TextEncoder();
  let socket = null;
  let delay = 0;
  let timer = null;
  let closed = false;

  const say = status.say;

  async function open() {
    clearTimeout(timer);
    if (closed) return;
    socket = dropSocket(socket);
    if (ctx.vm().state !== "running" && ctx.vm().state !== "paused") {
      say("waiting", `${ctx.name} is ${ctx.vm().state}; the console connects when it runs.`);
      return;
    }
    say("connecting", "Connecting…");
    const granted = await ticketOrSay("console", ctx.name, say);
    if (!granted) return later();
    if (closed) return;
    const ws = new WebSocket(socketUrl(ctx.name, "/console", granted.ticket));
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.onopen = () => {
      delay = 0;
      say("open", "Connected");
      term.focus();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        try {
          const frame = JSON.parse(event.data);
          if (frame.type === "error") say("error", frame.message);
        } catch {
          term.write(event.data);
        }
      } else {
        term.write(new Uint8Array(event.data));
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws || closed) return;
      socket = null;
      if (status.dataset.state !== "error") say("closed", closeReason(event, "console"));
      remark(term, "console disconnected; reconnecting");
      later();
    };
  }

  function later() {
    delay = Math.min(10000, delay ? delay * 2 : 1000);
    timer = setTimeout(open, delay);
  }

  term.onData((data) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  const stop = ctx.onVm((vm) => {
    if (vm.state === "running" && !socket) { delay = 0; open(); }
  });
  open();
  return {
    show() { fit(); term.focus(); },
    destroy() {
      closed = true;
      clearTimeout(timer);
      stop();
      if (socket) socket.close();
      dispose();
    },
  };
}
