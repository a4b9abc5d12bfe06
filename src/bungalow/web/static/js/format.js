// Numbers as the CLI prints them (cli/output.py's size, age; cli/leases.py's lease text).

const UNITS = ["B", "K", "M", "G", "T", "P"];

/** 536870912 -> "512M", 1610612736 -> "1.5G", 0 -> "-" (binary units, as `bungalow ls`). */
export function size(bytes) {
  if (bytes === null || bytes === undefined || !(bytes > 0)) return "-";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = value >= 10 || Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1);
  return text.replace(/\.0$/, "") + UNITS[unit];
}

/** Bytes as the API takes them back, exactly: 104857600 -> "100M", 1000 -> "1000". */
export function exactSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && value % 1024 === 0 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit ? `${value}${UNITS[unit]}` : String(value);
}

/** Bytes with a decimal, for a graph's close ticks: "252.3M", "1.25G". */
export function sizeFine(bytes) {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)}G` : `${(bytes / 2 ** 20).toFixed(1)}M`;
}

/** Bytes a second: "2K/s", "0/s" below one. */
export function rate(bytesPerSecond) {
  return bytesPerSecond >= 1 ? `${size(bytesPerSecond)}/s` : "0/s";
}

/** Seconds -> "45s", "12m", "3h", "2d" (the largest whole unit, as cli/output.py's span). */
export function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Epoch seconds -> how long ago, "5m". */
export function age(epochSeconds) {
  return epochSeconds ? span(Date.now() / 1000 - epochSeconds) : "-";
}

/** Epoch seconds -> local date and time, "2026-11-30 22:41:07". */
export function when(epochSeconds) {
  if (!epochSeconds) return "-";
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The VM's lease as `bungalow ls` shows it: "in 2h", "in 8m !" once warned, "-" without. */
export function lease(vm) {
  if (vm.expires_in === null || vm.expires_in === undefined) return vm.pooled ? "pool" : "-";
  const text = (vm.expires_in <= 0 ? "now" : `in ${span(vm.expires_in)}`)
    + (vm.lease_warned ? " !" : "");
  return vm.pooled ? `${text} (pool)` : text;
}

/** "0.0412 USD": four decimals below 100 so that an hour of a small VM shows, as cli/cost.py. */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return "-";
  const text = Math.abs(amount) >= 100
    ? amount.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2})
    : amount.toFixed(4);
  return `${text} ${currency || ""}`.trim();
}

/** 0.5 -> "50%". */
export function percent(share) {
  return `${Math.round(share * 100)}%`;
}
