// The events tab: this VM's audit log (GET /v1/events?vm=NAME), newest first, carried on by
// /live's `event` events.

import {get} from "../api.js";
import {errorLine, fill, h} from "../dom.js";
import {when} from "../format.js";
import {subscribe} from "../live.js";

/** One event as a list item (also used by other pages). */
export function eventItem(event) {
  return h("li", {"data-testid": "event-row", "data-kind": event.kind},
    h("time", {datetime: new Date(event.time * 1000).toISOString()}, when(event.time)), " ",
    h("span", {class: "tag"}, event.kind), " ",
    event.vm && event.vm !== undefined ? h("strong", {}, `${event.vm} `) : null,
    event.message,
    h("span", {class: "muted"}, ` — ${event.actor}${event.reason ? `, ${event.reason}` : ""}`));
}

export async function mount(panel, ctx) {
  const list = h("ol", {class: "events", reversed: true, "data-testid": "events-list", "aria-live": "polite"});
  const error = errorLine("events-error");
  fill(panel, error, list);
  const seen = new Set();
  try {
    const events = await get(`/v1/events?vm=${encodeURIComponent(ctx.name)}&limit=200`);
    for (const event of events) {
      seen.add(event.id);
      list.prepend(eventItem(event));
    }
  } catch (err) {
    error.say(err.message);
  }
  const stop = subscribe("event", (event) => {
    if (event.vm !== ctx.name || seen.has(event.id)) return;
    seen.add(event.id);
    list.prepend(eventItem(event));
  });
  return {destroy: stop};
}
