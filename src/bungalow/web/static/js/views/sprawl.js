// #/sprawl: what looks forgotten (GET /v1/sprawl), for how long and at what cost, and the
// action `bungalow sprawl --apply` would take for each.

import {get} from "../api.js";
import {bars} from "../charts.js";
import {fill, h} from "../dom.js";
import {money, span} from "../format.js";
import {subscribe} from "../live.js";

export async function render(main) {
  const box = h("div", {});
  async function draw() {
    const findings = await get("/v1/sprawl");
    if (!findings.length) {
      fill(box, h("p", {class: "muted", "data-testid": "sprawl-empty"}, "Nothing looks forgotten."));
      return;
    }
    fill(box,
      h("h2", {}, "How long each has looked forgotten"),
      bars(findings.map((f) => ({label: `${f.vm} (${f.kind})`, value: f.seconds, text: span(f.seconds),
                                 tone: f.automatic ? "over" : ""})), {testid: "sprawl-chart"}),
      h("table", {class: "list", "data-testid": "sprawl-table"},
        h("thead", {}, h("tr", {}, ["VM", "Why", "For", "State", "Owner / project", "Cost so far", "Action", ""]
          .map((t) => h("th", {scope: "col"}, t)))),
        h("tbody", {}, findings.map((f) => h("tr", {"data-testid": "sprawl-row", "data-vm": f.vm},
          h("th", {scope: "row"}, h("a", {href: `#/vms/${encodeURIComponent(f.vm)}`}, f.vm)),
          h("td", {}, f.why), h("td", {}, span(f.seconds)), h("td", {}, f.state),
          h("td", {}, [f.owner, f.project].filter(Boolean).join(" / ") || "-"),
          h("td", {class: "num"}, f.cost_so_far == null ? "-" : money(f.cost_so_far)),
          h("td", {"data-testid": "sprawl-action"}, f.action),
          h("td", {class: "muted"}, f.automatic ? "the reaper does it" : "on --apply"))))));
  }
  fill(main, h("h1", {}, "Sprawl"),
    h("p", {class: "muted"}, "Expired or ending leases, idle VMs, orphans, long-stopped VMs. "
      + "`bungalow sprawl --apply` takes each listed action."), box);
  await draw();
  let timer = null;
  const stop = subscribe("vms", () => {
    clearTimeout(timer);
    timer = setTimeout(() => draw().catch(() => {}), 1000);
  });
  return () => { stop(); clearTimeout(timer); };
}
