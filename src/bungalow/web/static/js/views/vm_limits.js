// The limits tab: PATCH /v1/vms/NAME/limits; a running VM's QEMU gets them at once.

import {patch, vmPath} from "../api.js";
import {errorLine, field, fill, guarded, h} from "../dom.js";
import {exactSize} from "../format.js";

/** [field, label, hint], as LimitsUpdate (daemon/api/schemas/requests.py) names them. */
export const LIMITS = [
  ["cpu_weight", "CPU weight", "relative share, 100 normal"],
  ["cpu_cap", "CPU cap", "CPUs at most, e.g. 0.5"],
  ["memory_limit", "Memory limit", "whole QEMU process, e.g. 1G"],
  ["disk_iops", "Disk IOPS", "operations a second"],
  ["disk_bw", "Disk bandwidth", "bytes a second, e.g. 100M"],
  ["disk_iops_burst", "Disk IOPS burst", ""],
  ["disk_bw_burst", "Disk bandwidth burst", ""],
  ["net_bw", "Network bandwidth", "bytes a second each way, e.g. 50M"],
];

/** Limits in bytes: shown as 100M rather than 104857600. */
const SIZES = new Set(["memory_limit", "disk_bw", "disk_bw_burst", "net_bw"]);

/** A limit's value as its field shows it ("" for none). */
export function limitText(key, value) {
  if (value === undefined || value === null) return "";
  return SIZES.has(key) ? exactSize(value) : String(value);
}

/** The PATCH body: only fields whose text changed; "" lifts a limit ("none"; 100 for the weight). */
export function limitsBody(values, current) {
  const body = {};
  for (const [key] of LIMITS) {
    const text = (values[key] || "").trim();
    const was = limitText(key, current[key]);
    if (text === was) continue;
    if (!text) body[key] = key === "cpu_weight" ? 100 : "none";
    else if (key === "cpu_weight") body[key] = /^\d+$/.test(text) ? Number(text) : text;
    else body[key] = text;
  }
  return body;
}

export function mount(panel, ctx) {
  const inputs = Object.fromEntries(LIMITS.map(([key]) => [key, h("input", {
    id: `limit-${key}`, name: key, "data-testid": `limit-${key.replaceAll("_", "-")}`, size: 10,
    autocomplete: "off"})]));
  const apply = h("button", {type: "submit", "data-testid": "limits-apply"}, "Apply");
  const error = errorLine("limits-error");
  const done = h("p", {class: "muted", role: "status", "aria-live": "polite", "data-testid": "limits-done"});
  const pending = h("p", {class: "muted", "data-testid": "limits-pending"});
  let shown = {};

  function load(vm) {
    shown = {...vm.limits};
    for (const [key, input] of Object.entries(inputs)) {
      if (document.activeElement !== input) input.value = limitText(key, shown[key]);
    }
    pending.textContent = vm.limits_pending.length
      ? `From the next start: ${vm.limits_pending.join(", ")}.` : "";
  }

  const form = h("form", {class: "card", "data-testid": "limits-form", noValidate: true},
    h("div", {class: "grid"}, LIMITS.map(([key, label, hint]) => field(label, inputs[key], hint))),
    h("div", {class: "row"}, apply, h("span", {class: "muted small"}, "Empty lifts a limit.")),
    error, done, pending);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    done.textContent = "";
    const values = Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value]));
    const body = limitsBody(values, shown);
    if (!Object.keys(body).length) {
      error.say("Nothing changed: edit a limit first.");
      return;
    }
    const vm = await guarded(apply, error, () => patch(vmPath(ctx.name, "/limits"), body));
    if (vm) {
      done.textContent = `Applied: ${Object.keys(body).join(", ")}.`;
      load(vm);
    }
  });
  fill(panel, form);
  load(ctx.vm());
  const stop = ctx.onVm((vm) => {
    if (!form.contains(document.activeElement)) load(vm);
  });
  return {destroy: stop};
}
