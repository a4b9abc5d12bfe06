// The overview tab: what `bungalow inspect` says, and graphs of CPU, memory, disk and network
// from the VM's metrics history (GET /v1/vms/NAME/metrics) carried on by /live's samples.

import {get, vmPath} from "../api.js";
import {timeGraph} from "../charts.js";
import {fill, h} from "../dom.js";
import {age, lease, money, percent, rate, size, sizeFine, when} from "../format.js";
import {live, rates, subscribe} from "../live.js";

function facts(vm) {
  const rows = [
    ["State", vm.operation ? `${vm.state} (${vm.operation})` : vm.state],
    ["Error", vm.error],
    ["Image", `${vm.image} (${vm.image_id.slice(0, 12)})`],
    ["Profile", `${vm.profile}, ${vm.firmware}${vm.tpm ? ", TPM 2.0" : ""}, accel ${vm.accel}`],
    ["CPUs", vm.cpus],
    ["Memory", size(vm.memory) + (vm.memory_min == null ? ""
      : `, floor ${size(vm.memory_min)}${vm.balloon ? "" : " (from its next cold start)"}`)],
    ["Disk", `${size(vm.disk_used)} used of ${size(vm.disk_size)}`
      + (vm.snapshots_used ? `, snapshots ${size(vm.snapshots_used)}` : "")],
    ["Networks", vm.networks.map((n) => `${n.network} ${n.address} (${n.mac})`).join("; ") || "user-mode"],
    ["Ports", vm.ports.join(", ") || "-"],
    ["CD-ROM", vm.media || (vm.profile === "pc" ? "empty" : null)],
    ["Project", vm.project], ["Owner", vm.owner],
    ["Labels", Object.entries(vm.labels).map(([k, v]) => `${k}=${v}`).join(", ") || null],
    ["Created", `${when(vm.created)} (${age(vm.created)} ago) by ${vm.created_by || "-"}`],
    ["Started", vm.started ? `${when(vm.started)} (${age(vm.started)} ago)` : "-"],
    ["Lease", vm.expires_in == null ? "none" : `${lease(vm)}, then ${vm.on_expiry}`],
    ["Idle policy", Object.keys(vm.idle).length ? Object.entries(vm.idle).map(([k, v]) => `${k} ${v}`).join(", ") : null],
    ["Quiet for", vm.quiet_for == null ? null : `${Math.round(vm.quiet_for)}s`],
    ["Cost", vm.cost ? `${money(vm.cost.so_far, vm.cost.currency)} so far, `
      + `${money(vm.cost.per_hour, vm.cost.currency)}/h now` : null],
    ["Limits", Object.entries(vm.limits).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
    ["cloud-init", vm.cloud_init ? "NoCloud seed" : null],
    ["SSH keys", vm.ssh_keys.join(", ") || null],
    ["Made from", vm.parent ? `${vm.parent}${vm.base_snapshot ? ` @ ${vm.base_snapshot}` : ""}` : null],
    ["QEMU pid", vm.pid], ["Id", vm.id],
  ];
  return h("dl", {class: "facts", "data-testid": "vm-facts"},
    rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

const GRAPHS = [
  ["CPU", [{label: "CPU (of one host CPU)", value: (r) => r.cpu}], percent],
  ["Memory", [{label: "QEMU resident", value: (r) => r.rss}], sizeFine],
  ["Disk", [{label: "read", value: (r) => r.disk_rd}, {label: "write", value: (r) => r.disk_wr}], rate],
  ["Network", [{label: "received", value: (r) => r.net_rx}, {label: "sent", value: (r) => r.net_tx}], rate],
];

export async function mount(panel, ctx) {
  const factBox = h("div", {});
  const graphBox = h("div", {class: "graphs", "data-testid": "vm-graphs"});
  const note = h("p", {class: "muted", "data-testid": "graphs-note"});
  fill(panel, h("div", {class: "overview"}, factBox, h("div", {}, note, graphBox)));
  fill(factBox, facts(ctx.vm()));
  let samples = [];
  let graphs = [];

  async function history() {
    try {
      samples = (await get(vmPath(ctx.name, "/metrics"))).history;
      note.textContent = "";
    } catch (err) {
      samples = live.samples.get(ctx.name) || [];
      const running = ctx.vm().state === "running";
      note.textContent = samples.length ? ""
        : running && err.status === 404 ? "No sample yet: the graphs fill in as the daemon samples the VM."
        : err.message;
    }
  }

  async function drawGraphs() {
    for (const g of graphs) g.destroy();
    fill(graphBox);
    const rows = rates(samples);
    graphs = await Promise.all(GRAPHS.map(([title, series, format]) => {
      const box = h("div", {class: "graph", "data-testid": `graph-${title.toLowerCase()}`});
      graphBox.append(box);
      return timeGraph(box, title, series, rows, format);
    }));
  }

  await history();
  await drawGraphs();
  const stops = [
    ctx.onVm((vm) => fill(factBox, facts(vm))),
    subscribe("metrics", (sample) => {
      if (sample.vm !== ctx.name) return;
      if (!samples.length || samples[samples.length - 1].time < sample.time) samples.push(sample);
      if (samples.length > 150) samples.splice(0, samples.length - 150);
      note.textContent = "";
      const rows = rates(samples);
      for (const g of graphs) g.update(rows);
    }),
  ];
  return {
    show() { for (const g of graphs) g.fit(); },
    destroy() {
      stops.forEach((stop) => stop());
      for (const g of graphs) g.destroy();
    },
  };
}
