// Live updates from GET /live (server-sent events): the VM list, events and metric samples.
// One EventSource for the whole page; views subscribe while they are shown.

import {resume} from "./api.js";

/** Samples kept per VM: five minutes at the daemon's 2 s interval, as its own history. */
const KEEP = 150;

export const live = {
  /** name -> VmInfo, as GET /v1/vms answers, the session's scope. */
  vms: new Map(),
  /** name -> [{time, "cpu.time", "balloon.rss", ...}], oldest first. */
  samples: new Map(),
  /** true once the first `vms` event came. */
  ready: false,
};

const listeners = {vms: new Set(), event: new Set(), metrics: new Set(), state: new Set()};
let source = null;
let lostSession = () => {};

/** Call `listener(data)` on each `kind` event ("vms", "event", "metrics", "state"); returns
 * a function that stops it. */
export function subscribe(kind, listener) {
  listeners[kind].add(listener);
  return () => listeners[kind].delete(listener);
}

function emit(kind, data) {
  for (const listener of [...listeners[kind]]) {
    try {
      listener(data);
    } catch (err) {
      console.error(err);
    }
  }
}

function indicate(state) {
  const el = document.getElementById("live-indicator");
  if (el) {
    el.dataset.state = state;
    el.textContent = {open: "live", connecting: "connecting…", closed: "offline"}[state];
  }
  emit("state", state);
}

/** Open the stream (after login); `onLost()` is called when the session turns out gone. */
export function connect(onLost) {
  lostSession = onLost;
  disconnect();
  indicate("connecting");
  source = new EventSource("/live", {withCredentials: true});
  source.onopen = () => indicate("open");
  source.onerror = async () => {
    if (source && source.readyState === EventSource.CLOSED) {
      indicate("closed");
      // EventSource gives up on a non-200 answer: a 401 means the session ended.
      const alive = await resume().catch(() => undefined);
      if (alive === null) lostSession();
      else setTimeout(() => { if (source && source.readyState === EventSource.CLOSED) connect(lostSession); }, 5000);
    } else {
      indicate("connecting");
    }
  };
  source.addEventListener("vms", (message) => {
    const list = JSON.parse(message.data);
    live.vms = new Map(list.map((vm) => [vm.name, vm]));
    for (const name of [...live.samples.keys()]) {
      const vm = live.vms.get(name);
      if (!vm || vm.state !== "running") live.samples.delete(name); // a new run starts afresh
    }
    live.ready = true;
    emit("vms", list);
  });
  source.addEventListener("event", (message) => emit("event", JSON.parse(message.data)));
  source.addEventListener("metrics", (message) => {
    const sample = JSON.parse(message.data);
    const ring = live.samples.get(sample.vm) || [];
    if (!ring.length || ring[ring.length - 1].time < sample.time) ring.push(sample);
    if (ring.length > KEEP) ring.splice(0, ring.length - KEEP);
    live.samples.set(sample.vm, ring);
    emit("metrics", sample);
  });
}

export function disconnect() {
  if (source) source.close();
  source = null;
  indicate("closed");
}

/**
 * Per-second rates between consecutive samples (cumulative counters in, rates out):
 * [{time, cpu (share of one host CPU), rss (bytes), disk_rd, disk_wr, net_rx, net_tx (bytes/s)}].
 */
export function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = Math.max(b.time - a.time, 1e-6);
    const d = (key) => Math.max(0, (b[key] || 0) - (a[key] || 0)) / dt;
    out.push({
      time: b.time,
      cpu: d("cpu.time") / 1e9,
      rss: b["balloon.rss"] || 0,
      disk_rd: d("block.rd.bytes"),
      disk_wr: d("block.wr.bytes"),
      net_rx: d("net.rx.bytes"),
      net_tx: d("net.tx.bytes"),
    });
  }
  return out;
}
