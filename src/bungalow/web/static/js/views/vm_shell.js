// The shell tab: a login shell in the guest through the agent, xterm.js on
// /v1/vms/NAME/exec/ws: first a JSON ExecRequest with tty, then binary frames are keys, and
// text frames are the daemon's JSON events (stdout/stderr in base64, exit, error) or our
// resize messages.

import {socketUrl} from "../api.js";
import {fill, h, statusLine} from "../dom.js";
import {closeReason, dropSocket, makeTerminal, remark, ticketOrSay} from "../terminal.js";

/** The user's login shell from /etc/passwd (/bin/sh when none is found), as a login shell. */
const LOGIN_SHELL = 'shell=$(awk -F: -v u="$(id -un)" \'$1==u{print $7; exit}\' /etc/passwd 2>/dev/null); '
  + '[ -x "$shell" ] || shell=/bin/sh; exec "$shell" -l';

function decode(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return bytes;
}

export async function mount(panel, ctx) {
  const box = h("div", {class: "terminal", "data-testid": "shell-terminal"});
  const status = statusLine("shell-status");
  const again = h("button", {type: "button", "data-testid": "shell-restart", onclick: () => open()},
                  "New shell");
  fill(panel, h("div", {class: "row"}, status, again), box,
       h("p", {class: "muted small"}, "A login shell run by the guest agent (as `bungalow shell`). Leaving the page hangs it up."));
  const {term, fit, dispose} = await makeTerminal(box, {scrollback: 5000});
  const encoder = new TextEncoder();
  let socket = null;
  let closed = false;

  const say = status.say;

  async function open() {
    socket = dropSocket(socket);
    if (ctx.vm().state !== "running") {
      say("waiting", `${ctx.name} is ${ctx.vm().state}; start it to open a shell.`);
      return;
    }
    say("connecting", "Starting a shell…");
    const granted = await ticketOrSay("exec", ctx.name, say);
    if (!granted || closed) return;
    fit();
    const ws = new WebSocket(socketUrl(ctx.name, "/exec/ws", granted.ticket));
    socket = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({argv: ["/bin/sh", "-c", LOGIN_SHELL], tty: true,
                              rows: term.rows, cols: term.cols}));
      say("open", "Connected");
      term.focus();
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "stdout" || frame.type === "stderr") term.write(decode(frame.data));
      else if (frame.type === "exit") {
        const how = frame.signal ? `signal ${frame.signal}` : `code ${frame.exit_code}`;
        say("exited", `The shell ended (${how}).`);
        remark(term, `shell ended (${how})`);
      } else if (frame.type === "error") say("error", frame.message);
    };
    ws.onclose = (event) => {
      if (socket !== ws || closed) return;
      socket = null;
      if (status.dataset.state === "open" || status.dataset.state === "connecting") {
        say("closed", closeReason(event, "shell"));
      }
    };
  }

  term.onData((data) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.onResize(({rows, cols}) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({type: "resize", rows, cols}));
  });
  open();
  return {
    show() { fit(); term.focus(); },
    destroy() {
      closed = true;
      if (socket) socket.close();
      dispose();
    },
  };
}
