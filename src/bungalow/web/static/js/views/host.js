// #/host: the host's capacity and what is allocated of it (GET /v1/host), each running
// VM's use now with the NOISY markers and who waits (steal) while they take the CPU or disk
// (GET /v1/metrics, fetched again after each sample), and what the VMs really cost in memory:
// QEMU's PSS, its own overhead, what KSM shares and what guests gave back (GET /v1/overhead,
// read when the page opens and on Refresh: it reads every QEMU's smaps).

import {get} from "../api.js";
import {bars} from "../charts.js";
import {fill, h} from "../dom.js";
import {percent, rate, size} from "../format.js";
import {live} from "../live.js";
import {markers, noisyWatch} from "./noisy.js";

function capacity(host) {
  const row = (label, allocated, limit, total, fmt) => ({
    label, value: allocated, tone: allocated > limit ? "over" : "",
    text: `${fmt(allocated)} of ${fmt(limit)} (${fmt(total)} × ${host.ratios[label.toLowerCase()] ?? 1})`,
  });
  const count = (n) => String(n);
  return [
    row("CPU", host.allocated_cpus, host.limit.cpus, host.cpus, count),
    row("Memory", host.allocated_memory, host.limit.memory, host.memory, size),
    row("Disk", host.allocated_disk, host.limit.disk, host.disk_total, size),
  ].map((r, i) => ({...r, max: [host.limit.cpus, host.limit.memory, host.limit.disk][i]}));
}

function waiting(entries) {
  const noisy = entries.filter((e) => e.noisy);
  const waiters = entries.filter((e) => !e.noisy && e.rates && e.rates.steal >= 0.05)
    .sort((a, b) => b.rates.steal - a.rates.steal);
  if (!noisy.length && !waiters.length) return "Nobody waits: no VM is marked NOISY and none waits 5% or more for a host CPU.";
  const who = noisy.map((e) => `${e.vm} (${e.noisy_for.join(",")})`).join(", ") || "no VM marked NOISY";
  const wait = waiters.map((e) => `${e.vm} (steal ${percent(e.rates.steal)})`).join(", ") || "none measurably";
  return `Taking most: ${who}. Waiting for a host CPU: ${wait}.`;
}

/** KSM as host info says it: on or off, and whose switch it is (daemon/api/schemas/memory.py). */
function ksmState(ksm) {
  const who = {bungalow: "turned on by bungalow", other: "turned on by someone else",
    yielded: "turned off by someone after bungalow", off: "off", absent: "not in this kernel"};
  const state = ksm.holder === "off" ? "KSM off" : `KSM ${ksm.run ? "on" : "off"}: ${who[ksm.holder] ?? ksm.holder}`;
  return `${state}; this daemon's [memory] ksm = ${ksm.mode}`;
}

const orNone = (n) => (n === null || n === undefined ? "-" : size(n));

function memoryTable(overhead) {
  const rows = overhead.vms.map((v) => h("tr", {"data-testid": "host-memory-vm", "data-vm": v.vm},
    h("th", {scope: "row"}, h("a", {href: `#/vms/${encodeURIComponent(v.vm)}`}, v.vm)),
    ...[v.memory, v.guest_used, v.pss, v.overhead, v.ksm_profit, v.given_back]
      .map((n) => h("td", {class: "num"}, orNone(n)))));
  const m = overhead.host;
  const sums = [["Allocated to running VMs", size(m.allocated)], ["QEMUs' summed PSS", size(m.qemu_pss)],
    ["of which guest RAM", size(m.guest_ram)], ["Guests say they use", orNone(m.guest_used)],
    ["Shared by KSM", `${size(m.shared)} (${ksmState(m.ksm)})`],
    ["Given back by guests", orNone(m.given_back)], ["Median QEMU overhead", orNone(m.overhead_median)]];
  return [
    h("dl", {class: "facts", "data-testid": "host-memory"},
      sums.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("table", {class: "list"},
      h("thead", {}, h("tr", {}, ["VM", "Memory", "Guest uses", "PSS", "QEMU overhead", "KSM saves", "Given back"]
        .map((t, i) => h("th", {scope: "col", class: i ? "num" : ""}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", {colspan: 7, class: "muted"}, "No VM runs.")))),
  ];
}

export async function render(main) {
  const top = h("div", {class: "host-top"});
  const usage = h("tbody", {});
  const summary = h("p", {role: "status", "aria-live": "polite", "data-testid": "host-waiting"});
  const noisy = noisyWatch(drawUsage);

  function drawUsage() {
    const entries = noisy.all();
    summary.textContent = waiting(entries);
    fill(usage, entries.length ? entries.map((e) => {
      const r = e.rates || {};
      return h("tr", {"data-testid": "host-vm", "data-vm": e.vm},
        h("th", {scope: "row"}, h("a", {href: `#/vms/${encodeURIComponent(e.vm)}`}, e.vm)),
        h("td", {class: "num"}, r.cpu === undefined ? "…" : percent(r.cpu)),
        h("td", {class: "num"}, r.steal === undefined ? "" : percent(r.steal)),
        h("td", {class: "num"}, r.rss === undefined ? "" : size(r.rss)),
        h("td", {class: "num"}, r.block_rd_bytes === undefined ? "" : `${rate(r.block_rd_bytes)} / ${rate(r.block_wr_bytes)}`),
        h("td", {class: "num"}, r.net_rx_bytes === undefined ? "" : `${rate(r.net_rx_bytes)} / ${rate(r.net_tx_bytes)}`),
        h("td", {}, markers(e, live.vms.get(e.vm))));
    }) : h("tr", {}, h("td", {colspan: 7, class: "muted"}, "No VM runs.")));
  }

  const memory = h("div", {});
  const refresh = h("button", {type: "button", "data-testid": "host-memory-refresh"}, "Refresh");
  async function drawMemory() {
    refresh.disabled = true;
    try {
      fill(memory, memoryTable(await get("/v1/overhead")));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener("click", drawMemory);

  const host = await get("/v1/host");
  fill(top,
    h("dl", {class: "facts", "data-testid": "host-facts"},
      [["Host", host.hostname], ["bungalow", host.version], ["QEMU", host.qemu],
       ["Accelerator", `${host.accel.name}: ${host.accel.reason}`],
       ["CPUs", host.cpus], ["Memory", `${size(host.memory)} (${size(host.memory_available)} available)`],
       ["Disk", `${size(host.disk_free)} free of ${size(host.disk_total)}`],
       ["VMs", `${host.vms_running} running of ${host.vms}`],
       ["Free to allocate", `${host.free.cpus} CPUs, ${size(host.free.memory)}, ${size(host.free.disk)} disk`]]
        .map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    h("div", {},
      h("h2", {}, "Allocated (capacity × allocation ratio)"),
      bars(capacity(host), {testid: "host-allocation"})));
  fill(main, h("h1", {}, "Host"), top,
    h("h2", {}, "Use per running VM"), summary,
    h("table", {class: "list", "data-testid": "host-usage"},
      h("thead", {}, h("tr", {}, ["VM", "CPU", "Steal", "Memory", "Disk rd/wr", "Net rx/tx", ""]
        .map((t, i) => h("th", {scope: "col", class: i >= 1 && i <= 5 ? "num" : ""}, t)))), usage),
    h("p", {class: "muted small"}, "CPU is a share of one host CPU; steal is the time its vCPUs waited for one. "
      + "NOISY marks a VM taking most of the CPU or disk while others wait; held, one the daemon throttles."),
    h("h2", {}, "Memory: what the VMs really cost ", refresh), memory,
    h("p", {class: "muted small"}, "PSS counts a page shared by several QEMUs (KSM, a snapshot's page cache) "
      + "once across them; QEMU overhead is PSS less guest RAM. A VM started from a snapshot gives nothing "
      + "back until it is started afresh (its RAM is the snapshot's file)."));
  drawUsage();
  await drawMemory();
  return () => noisy.stop();
}
