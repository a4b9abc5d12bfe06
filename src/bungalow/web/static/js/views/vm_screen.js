// The screen tab of a pc VM: noVNC's RFB on /v1/vms/NAME/vnc/ws (the ticket brings the
// one-time VNC password the daemon set), Ctrl-Alt-Del, and typing text as key presses of a
// chosen layout through POST /v1/vms/NAME/type (what VNC's keysyms get wrong on non-US guests).

import {post, socketUrl, ticket, vmPath} from "../api.js";
import {errorLine, field, fill, guarded, h, statusLine} from "../dom.js";

/** The layouts POST /type knows: bungalow/qemu/keys.py's LAYOUTS. */
export const LAYOUTS = ["us", "de"];

let rfbModule = null;

async function loadRfb() {
  if (!rfbModule) rfbModule = import("/vendor/@novnc/novnc/core/rfb.js");
  return (await rfbModule).default;
}

export async function mount(panel, ctx) {
  if (ctx.vm().profile !== "pc") {
    fill(panel, h("p", {class: "muted", "data-testid": "screen-none"},
      `${ctx.name} is a micro VM: it has no screen. Use the Console or Shell tab.`));
    return {};
  }
  const screen = h("div", {class: "screen", "data-testid": "screen"});
  const status = statusLine("screen-status");
  const error = errorLine("screen-error");
  const reconnect = h("button", {type: "button", "data-testid": "screen-reconnect", onclick: () => open()},
                      "Reconnect");
  // vms/boot.py: only a VM booting through firmware (an imported disk, an installer) reboots
  // in place; a bungalow-built image's guest boots its kernel directly, and a reset ends it.
  const cad = h("button", {type: "button", "data-testid": "screen-ctrl-alt-del",
                           title: "A VM from an imported disk or an ISO reboots; one from a "
                             + "bungalow-built image stops (start it again)"}, "Ctrl-Alt-Del");
  cad.onclick = () => guarded(cad, error,
    () => post(vmPath(ctx.name, "/keys"), {keys: ["ctrl-alt-delete"]}));
  const text = h("textarea", {id: "screen-type-text", "data-testid": "screen-type-text", rows: 2,
                              cols: 40, spellcheck: false});
  const layout = h("select", {id: "screen-type-layout", "data-testid": "screen-type-layout"},
                   LAYOUTS.map((name) => h("option", {value: name}, name)));
  const typeButton = h("button", {type: "submit", "data-testid": "screen-type-submit"}, "Type it");
  const typeForm = h("form", {class: "row type-form"},
    field("Type this text", text, "A newline is Enter."),
    field("Guest's keyboard layout", layout, `Typing works for ${LAYOUTS.join(" and ")} (de without dead keys).`),
    typeButton);
  typeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const done = await guarded(typeButton, error,
      () => post(vmPath(ctx.name, "/type"), {text: text.value, layout: layout.value}));
    if (done !== undefined) text.value = "";
  });
  // The Debian cloud kernel of bungalow's images has no framebuffer console (console=ttyS0):
  // say so, or the firmware's last words look like a hung VM.
  const where = h("p", {class: "muted small", "data-testid": "screen-hint"},
    "A VM from a bungalow-built image writes to its serial console, not here: this screen "
    + "keeps the firmware's last words. Use the Console or Shell tab for it. Installers and "
    + "imported disks draw here.");
  fill(panel, h("div", {class: "row"}, status, reconnect, cad), where, error, screen, typeForm);
  let rfb = null;
  let closed = false;

  const say = status.say;

  async function open() {
    error.clear();
    if (rfb) {
      rfb.disconnect();
      rfb = null;
    }
    if (ctx.vm().state !== "running" && ctx.vm().state !== "paused") {
      say("waiting", `${ctx.name} is ${ctx.vm().state}; its screen shows once it runs.`);
      return;
    }
    say("connecting", "Connecting…");
    let granted;
    let RFB;
    try {
      [granted, RFB] = await Promise.all([ticket("vnc", ctx.name), loadRfb()]);
    } catch (err) {
      say("error", err.message);
      return;
    }
    if (closed) return;
    fill(screen);
    const client = new RFB(screen, socketUrl(ctx.name, "/vnc/ws", granted.ticket),
                           {credentials: {password: granted.password}, wsProtocols: ["binary"]});
    rfb = client;
    client.scaleViewport = true;
    client.focusOnClick = true;
    const canvas = screen.querySelector("canvas");
    if (canvas) canvas.dataset.testid = "screen-canvas";
    client.addEventListener("connect", () => say("open", "Connected"));
    client.addEventListener("disconnect", (event) => {
      if (rfb !== client) return;
      rfb = null;
      say("closed", event.detail.clean ? "The screen's connection closed; press Reconnect."
                                       : "The screen's connection was lost; press Reconnect.");
    });
    client.addEventListener("securityfailure", (event) =>
      say("error", `The VNC server refused the password (${event.detail.reason || "no reason given"}); press Reconnect for a new one.`));
    client.addEventListener("credentialsrequired", () =>
      client.sendCredentials({password: granted.password}));
  }

  const stop = ctx.onVm((vm) => {
    if (vm.state === "running" && !rfb && status.dataset.state === "waiting") open();
  });
  open();
  return {
    destroy() {
      closed = true;
      stop();
      if (rfb) rfb.disconnect();
    },
  };
}
