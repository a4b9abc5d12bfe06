// #/vms: every VM the session may see, live; bulk start/stop/delete; keyboard navigation
// (arrow keys or j/k move, Enter opens, Space or x selects).

import {del, get, post, vmPath} from "../api.js";
import {sparkline} from "../charts.js";
import {errorLine, fill, h} from "../dom.js";
import {lease, money, percent, size} from "../format.js";
import {live, rates, subscribe} from "../live.js";
import {markers, noisyWatch} from "./noisy.js";

export function render(main) {
  const selected = new Set();
  let focused = null;
  const tbody = h("tbody", {});
  const error = errorLine("bulk-error");
  const count = h("span", {class: "muted", "data-testid": "selected-count"});
  const button = (label, testid, onclick) =>
    h("button", {type: "button", "data-testid": testid, onclick, disabled: true}, label);
  const startButton = button("Start", "bulk-start", () => bulk("start"));
  const stopButton = button("Stop", "bulk-stop", () => bulk("stop"));
  const deleteButton = button("Delete…", "bulk-delete", () => askDelete());
  const confirm = h("dialog", {"data-testid": "confirm-dialog", "aria-labelledby": "confirm-text"});
  let pending = false;
  const redraw = () => {  // coalesce a burst of events (one metrics event per VM) into one draw
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  };
  const noisy = noisyWatch(redraw, {rates: false});  // the markers come with /live's samples

  function addresses(vm) {
    const out = vm.networks.map((nic) => `${nic.network} ${nic.address}`);
    if (vm.ports.length) out.push(`ports ${vm.ports.join(",")}`);
    return out.join(" · ") || "-";
  }

  function row(vm) {
    const series = rates(live.samples.get(vm.name) || []);
    const last = series[series.length - 1];
    const box = h("input", {type: "checkbox", checked: selected.has(vm.name), tabindex: "-1",
                            "data-testid": "vm-select", "aria-label": `Select ${vm.name}`,
                            onchange: (e) => toggle(vm.name, e.target.checked)});
    const tr = h("tr", {"data-testid": "vm-row", "data-vm": vm.name, "data-state": vm.state,
                        tabindex: focused === vm.name ? "0" : "-1",
                        class: selected.has(vm.name) ? "selected" : "",
                        onfocus: () => { focused = vm.name; roving(); }},
      h("td", {}, box),
      h("td", {}, h("a", {href: `#/vms/${encodeURIComponent(vm.name)}`, tabindex: "-1",
                          "data-testid": "vm-link"}, vm.name)),
      h("td", {}, h("span", {class: `state state-${vm.state}`, "data-testid": "vm-state"},
                    vm.operation ? `${vm.state} (${vm.operation})` : vm.state)),
      h("td", {}, vm.profile),
      h("td", {class: "addr"}, addresses(vm)),
      h("td", {class: "spark-cell"},
        sparkline(series.map((r) => r.cpu), {max: Math.max(vm.cpus, 0.05), label: `CPU of ${vm.name}`}),
        h("span", {class: "num"}, last ? percent(last.cpu) : "")),
      h("td", {class: "spark-cell"},
        sparkline(series.map((r) => r.rss), {max: vm.memory * 1.2, label: `Memory of ${vm.name}`}),
        h("span", {class: "num", title: `its QEMU's resident memory, of ${size(vm.memory)} given`},
          last ? `${size(last.rss)} of ${size(vm.memory)}` : size(vm.memory))),
      h("td", {class: "num"}, vm.cost ? money(vm.cost.so_far, vm.cost.currency) : "-"),
      h("td", {class: vm.lease_warned ? "warn" : ""}, lease(vm)),
      h("td", {"data-testid": "vm-markers"}, markers(noisy.get(vm.name), vm)));
    return tr;
  }

  function draw() {
    const had = document.activeElement && tbody.contains(document.activeElement);
    const vms = [...live.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const name of [...selected]) if (!live.vms.has(name)) selected.delete(name);
    if (focused && !live.vms.has(focused)) focused = null;
    if (!focused && vms.length) focused = vms[0].name;
    if (!vms.length) {
      fill(tbody, h("tr", {}, h("td", {colspan: 10, class: "muted", "data-testid": "vm-empty"},
        live.ready ? "No VMs yet. Make one with New VM." : "Loading…")));
    } else {
      fill(tbody, vms.map(row));
    }
    if (had) focusRow(focused);
    const n = selected.size;
    count.textContent = n ? `${n} selected` : "";
    for (const b of [startButton, stopButton, deleteButton]) b.disabled = n === 0;
  }

  function rows() {
    return [...tbody.querySelectorAll("tr[data-vm]")];
  }

  function roving() {
    for (const tr of rows()) tr.tabIndex = tr.dataset.vm === focused ? 0 : -1;
  }

  function focusRow(name) {
    const tr = rows().find((r) => r.dataset.vm === name);
    if (tr) {
      focused = name;
      roving();
      tr.focus();
    }
  }

  function toggle(name, on) {
    if (on) selected.add(name);
    else selected.delete(name);
    draw();
  }

  tbody.addEventListener("keydown", (event) => {
    const list = rows();
    const at = list.findIndex((r) => r.dataset.vm === focused);
    const move = (step) => {
      const next = list[Math.max(0, Math.min(list.length - 1, at + step))];
      if (next) focusRow(next.dataset.vm);
      event.preventDefault();
    };
    if (event.target.tagName === "INPUT" && event.key === " ") return;
    if (event.key === "ArrowDown" || event.key === "j") move(1);
    else if (event.key === "ArrowUp" || event.key === "k") move(-1);
    else if (event.key === "Home") move(-list.length);
    else if (event.key === "End") move(list.length);
    else if (event.key === "Enter" && focused) {
      location.hash = `#/vms/${encodeURIComponent(focused)}`;
    } else if ((event.key === " " || event.key === "x") && focused) {
      toggle(focused, !selected.has(focused));
      event.preventDefault();
    }
  });

  async function bulk(action) {
    error.clear();
    const names = [...selected];
    const failed = [];
    for (const b of [startButton, stopButton, deleteButton]) b.disabled = true;
    await Promise.all(names.map(async (name) => {
      try {
        if (action === "delete") await del(vmPath(name));
        else if (action === "start") await post(vmPath(name, "/start"));
        else await post(vmPath(name, "/stop"));
        selected.delete(name);
      } catch (err) {
        failed.push(`${name}: ${err.message}`);
      }
    }));
    error.say(failed.join(" "));
    draw();
  }

  function askDelete() {
    const names = [...selected].sort();
    fill(confirm,
      h("p", {id: "confirm-text"}, names.length === 1
        ? `Delete the VM ${names[0]}? Its disk and snapshots are removed; this cannot be undone.`
        : `Delete ${names.length} VMs: ${names.join(", ")}? Their disks and snapshots are removed; `
          + "this cannot be undone."),
      h("form", {method: "dialog", class: "row"},
        h("button", {value: "cancel", "data-testid": "confirm-cancel", autofocus: true},
          names.length === 1 ? "Keep it" : "Keep them"),
        h("button", {value: "delete", class: "danger", "data-testid": "confirm-delete"}, "Delete")));
    confirm.onclose = () => {
      if (confirm.returnValue === "delete") bulk("delete");
    };
    confirm.returnValue = "";
    confirm.showModal();
  }

  const table = h("table", {class: "vms", "data-testid": "vm-table"},
    h("caption", {class: "sr-only"}, "Virtual machines"),
    h("thead", {}, h("tr", {},
      ["", "Name", "State", "Profile", "Addresses", "CPU", "Memory held", "Cost", "Lease", ""]
        .map((t) => h("th", {scope: "col", class: t === "Cost" ? "num" : ""}, t)))),
    tbody);
  fill(main,
    h("div", {class: "toolbar"},
      h("h1", {}, "VMs"), startButton, stopButton, deleteButton, count,
      h("a", {href: "#/new", class: "button", "data-testid": "new-vm"}, "New VM")),
    error, table, confirm,
    h("p", {class: "muted small"}, "Arrow keys or j/k move, Enter opens, Space or x selects."));
  draw();
  if (!live.ready) {
    // /live has not answered yet (or cannot): show the list the API gives meanwhile.
    get("/v1/vms").then((list) => {
      if (!live.ready) {
        live.vms = new Map(list.map((vm) => [vm.name, vm]));
        draw();
      }
    }, (err) => error.say(err.message));
  }
  seedSamples();

  // Until /live has sent a few samples, the sparklines start from each VM's history.
  async function seedSamples() {
    const running = [...live.vms.values()].filter((vm) => vm.state === "running"
                                                    && !(live.samples.get(vm.name) || []).length);
    await Promise.all(running.map(async (vm) => {
      try {
        const answer = await get(vmPath(vm.name, "/metrics"));
        if (!(live.samples.get(vm.name) || []).length) live.samples.set(vm.name, answer.history.slice(-60));
      } catch {
        // no history yet (just started): /live fills it
      }
    }));
    draw();
  }

  const stops = [
    subscribe("vms", () => { redraw(); if (live.ready) seedOnce(); }),
    subscribe("metrics", redraw),
  ];
  let seeded = live.ready;
  function seedOnce() {
    if (!seeded) {
      seeded = true;
      seedSamples();
    }
  }
  return () => {
    stops.forEach((stop) => stop());
    noisy.stop();
    if (confirm.open) confirm.close();
  };
}
