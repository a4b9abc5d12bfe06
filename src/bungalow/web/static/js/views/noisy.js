// NOISY and "held" markers, as `bungalow top` shows them: from GET /v1/metrics, fetched again
// after each burst of /live metric samples (never more often than the daemon samples), or,
// where the per-second rates are not needed, from the markers each /live sample carries.

import {get} from "../api.js";
import {h} from "../dom.js";
import {subscribe} from "../live.js";

/**
 * Keep name -> {noisy, noisy_for, throttled, rates} fresh; `changed()` is called after each
 * fetch. Returns {get(name), all(), stop()}. With `{rates: false}` nothing is fetched: the
 * markers come with /live's samples (no `rates` then), which costs the daemon nothing more
 * per open page (bench/dashboard.py).
 */
export function noisyWatch(changed, {rates = true} = {}) {
  let entries = new Map();
  let timer = null;
  let stopped = false;
  async function fetchNow() {
    timer = null;
    try {
      const list = await get("/v1/metrics");
      if (stopped) return;
      entries = new Map(list.map((entry) => [entry.vm, entry]));
      changed();
    } catch {
      // the markers stay as they were; the live indicator says when the daemon is gone
    }
  }
  function fromSample(sample) {
    const noisyFor = sample.noisy_for || [];
    entries.set(sample.vm, {vm: sample.vm, noisy: noisyFor.length > 0, noisy_for: noisyFor,
                            throttled: sample.throttled || []});
  }
  // One fetch, or one change, per sample interval's burst of samples.
  const unsubscribe = subscribe("metrics", (sample) => {
    if (!rates) fromSample(sample);
    if (!timer) {
      timer = setTimeout(rates ? fetchNow : () => { timer = null; if (!stopped) changed(); }, 500);
    }
  });
  if (rates) fetchNow();
  return {
    get: (name) => entries.get(name),
    all: () => [...entries.values()],
    stop() {
      stopped = true;
      unsubscribe();
      if (timer) clearTimeout(timer);
    },
  };
}

/** The markers of a VM's row: "NOISY cpu,disk", "held cpu", a paused VM's reason. */
export function markers(entry, vm) {
  const out = [];
  if (entry && entry.noisy) {
    out.push(h("span", {class: "tag noisy", "data-testid": "noisy",
                        title: "Takes most of the CPU or disk while others wait"},
               `NOISY ${(entry.noisy_for || []).join(",")}`));
  }
  if (entry && entry.throttled && entry.throttled.length) {
    out.push(h("span", {class: "tag held", title: "The daemon holds it to its share"},
               `held ${entry.throttled.join(",")}`));
  }
  if (vm && vm.state === "paused" && vm.error) {
    out.push(h("span", {class: "tag warn", title: vm.error}, "paused by bungalow"));
  }
  if (vm && vm.limits_pending && vm.limits_pending.length) {
    out.push(h("span", {class: "tag", title: "Apply from the next start"},
               `pending ${vm.limits_pending.join(",")}`));
  }
  return out;
}
