// #/vms/NAME/TAB: one VM, its actions, and tabs made on first visit and kept while the page
// is shown (a console keeps its scrollback across tab switches).

import {del, get, post, vmPath} from "../api.js";
import {errorLine, fill, h} from "../dom.js";
import {lease} from "../format.js";
import {live, subscribe} from "../live.js";

export const TABS = ["overview", "console", "shell", "screen", "snapshots", "limits", "events"];
const TITLES = {overview: "Overview", console: "Console", shell: "Shell", screen: "Screen",
                snapshots: "Snapshots", limits: "Limits", events: "Events"};

export async function render(main, params) {
  const name = params.name;
  let vm = await get(vmPath(name));
  const watchers = new Set();
  const ctx = {
    name,
    vm: () => vm,
    /** Call `cb(vm)` on each change of this VM's record; returns the stop function. */
    onVm(cb) { watchers.add(cb); return () => watchers.delete(cb); },
  };
  const panels = new Map(); // tab -> {el, handle}
  const tabBar = h("div", {role: "tablist", class: "tabs", "aria-label": `${name}'s views`});
  const panelBox = h("div", {class: "panels"});
  const title = h("h1", {"data-testid": "vm-name"}, name);
  const state = h("span", {class: "state", "data-testid": "vm-detail-state"});
  const facts = h("span", {class: "muted"});
  const error = errorLine("vm-action-error");
  const actions = h("div", {class: "row actions"});
  let current = null;

  const buttons = TABS.map((tab) => h("button", {
    type: "button", role: "tab", id: `tab-${tab}`, "data-testid": `tab-${tab}`,
    "aria-controls": `panel-${tab}`, "aria-selected": "false", tabindex: "-1",
    onclick: () => { location.hash = `#/vms/${encodeURIComponent(name)}/${tab}`; },
  }, TITLES[tab]));
  tabBar.append(...buttons);
  tabBar.addEventListener("keydown", (event) => {
    const at = TABS.indexOf(current);
    const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
    if (step) {
      const next = TABS[(at + step + TABS.length) % TABS.length];
      location.hash = `#/vms/${encodeURIComponent(name)}/${next}`;
      event.preventDefault();
    }
  });

  function action(label, testid, run, when) {
    return {label, testid, run, when};
  }
  const ACTIONS = [
    action("Start", "vm-start", () => post(vmPath(name, "/start")), (v) => ["stopped", "suspended", "failed", "created"].includes(v.state)),
    action("Stop", "vm-stop", () => post(vmPath(name, "/stop")), (v) => ["running", "paused"].includes(v.state)),
    action("Pause", "vm-pause", () => post(vmPath(name, "/pause")), (v) => v.state === "running"),
    action("Resume", "vm-resume", () => post(vmPath(name, "/resume")), (v) => ["paused", "suspended"].includes(v.state)),
  ];

  function drawHeader() {
    state.textContent = vm.operation ? `${vm.state} (${vm.operation})` : vm.state;
    state.className = `state state-${vm.state}`;
    facts.textContent = ` ${vm.image} · ${vm.profile} · ${vm.cpus} CPU · lease ${lease(vm)}`;
    fill(actions, ACTIONS.filter((a) => a.when(vm)).map((a) => {
      const b = h("button", {type: "button", "data-testid": a.testid}, a.label);
      b.onclick = async () => {
        error.clear();
        b.disabled = true;
        try {
          vm = await a.run();
          drawHeader();
          for (const cb of watchers) cb(vm);
        } catch (err) {
          error.say(err.message);
        } finally {
          b.disabled = false;
        }
      };
      return b;
    }), deleteButton);
  }

  const confirm = h("dialog", {"data-testid": "confirm-dialog"},
    h("p", {}, `Delete ${name}? Its disk and snapshots are removed; this cannot be undone.`),
    h("form", {method: "dialog", class: "row"},
      h("button", {value: "cancel", "data-testid": "confirm-cancel", autofocus: true}, "Keep it"),
      h("button", {value: "delete", class: "danger", "data-testid": "confirm-delete"}, "Delete")));
  confirm.onclose = async () => {
    if (confirm.returnValue !== "delete") return;
    try {
      await del(vmPath(name));
      location.hash = "#/vms";
    } catch (err) {
      error.say(err.message);
    }
  };
  const deleteButton = h("button", {type: "button", class: "danger", "data-testid": "vm-delete",
                                    onclick: () => { confirm.returnValue = ""; confirm.showModal(); }}, "Delete…");

  async function switchTab(tab) {
    if (!TABS.includes(tab)) tab = "overview";
    current = tab;
    buttons.forEach((b, i) => {
      const on = TABS[i] === tab;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
    });
    for (const [key, panel] of panels) {
      panel.el.hidden = key !== tab;
      if (key !== tab && panel.handle && panel.handle.hide) panel.handle.hide();
    }
    if (document.activeElement && tabBar.contains(document.activeElement)) buttons[TABS.indexOf(tab)].focus();
    let panel = panels.get(tab);
    if (!panel) {
      const el = h("section", {role: "tabpanel", id: `panel-${tab}`, "aria-labelledby": `tab-${tab}`,
                               "data-testid": `panel-${tab}`, class: "panel"});
      panel = {el, handle: null};
      panels.set(tab, panel);
      panelBox.append(el);
      const module = await import(`./vm_${tab}.js`);
      panel.handle = await module.mount(el, ctx);
    }
    if (current === tab && panel.handle && panel.handle.show) panel.handle.show();
  }

  fill(main,
    h("div", {class: "toolbar"}, h("a", {href: "#/vms", class: "back"}, "← VMs"), title, state, facts),
    actions, error, tabBar, panelBox, confirm);
  drawHeader();
  main.switchTab = switchTab;
  await switchTab(params.tab);

  const stop = subscribe("vms", () => {
    const fresh = live.vms.get(name);
    if (!fresh) {
      if (live.ready) {
        state.textContent = "deleted";
        fill(actions);
      }
      return;
    }
    if (JSON.stringify(fresh) === JSON.stringify(vm)) return;
    vm = fresh;
    drawHeader();
    for (const cb of watchers) cb(vm);
  });
  return () => {
    stop();
    for (const panel of panels.values()) if (panel.handle && panel.handle.destroy) panel.handle.destroy();
    if (confirm.open) confirm.close();
  };
}
