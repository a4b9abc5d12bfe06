// #/costs: what was spent (GET /v1/costs) grouped by VM, owner, project or a label, over a
// chosen time, as bars; and what each VM costs now.

import {get} from "../api.js";
import {bars} from "../charts.js";
import {errorLine, field, fill, guarded, h} from "../dom.js";
import {money, when} from "../format.js";

export async function render(main) {
  const by = h("select", {id: "costs-by", "data-testid": "costs-by"},
    [["vm", "VM"], ["owner", "owner"], ["project", "project"]].map(([v, t]) => h("option", {value: v}, t)));
  const label = h("input", {id: "costs-label", "data-testid": "costs-label", placeholder: "or label KEY", size: 10});
  const since = h("input", {id: "costs-since", "data-testid": "costs-since", value: "7d", size: 8});
  const show = h("button", {type: "submit", "data-testid": "costs-show"}, "Show");
  const error = errorLine("costs-error");
  const box = h("div", {});
  const form = h("form", {class: "row"}, field("Group by", by), field("Label", label), field("Since", since, "7d, 24h or a date"), show);

  async function draw() {
    const key = label.value.trim();
    const params = new URLSearchParams({by: key ? `label:${key}` : by.value});
    if (since.value.trim()) params.set("since", since.value.trim());
    const report = await get(`/v1/costs?${params}`);
    const rows = report.rows.filter((r) => r.total > 0 || r.running_hours > 0);
    fill(box,
      h("p", {"data-testid": "costs-total"},
        `Total ${money(report.total.total, report.currency)} from ${when(report.since)} `
        + `to ${when(report.until)}; rates now: `
        + Object.entries(report.rates).map(([k, v]) => `${k} ${v}`).join(", ") + "."),
      rows.length ? bars(rows.map((r) => ({
        label: r.group + (r.removed ? " (removed)" : ""), value: r.total,
        text: money(r.total, report.currency),
        title: `CPU ${money(r.cpu)}, memory ${money(r.memory)}, disk ${money(r.disk)}; `
          + `${r.running_hours.toFixed(1)} h running, ${r.stopped_hours.toFixed(1)} h stopped`,
      })), {testid: "costs-chart"}) : h("p", {class: "muted"}, "Nothing was spent in that time."),
      h("table", {class: "list", "data-testid": "costs-table"},
        h("thead", {}, h("tr", {}, [report.by === "vm" ? "VM" : report.by, "Running h", "Stopped h", "CPU",
                                    "Memory", "Disk", "Total"]
          .map((t, i) => h("th", {scope: "col", class: i ? "num" : ""}, t)))),
        h("tbody", {}, rows.map((r) => h("tr", {"data-testid": "costs-row"},
          h("th", {scope: "row"}, r.group),
          ...[r.running_hours.toFixed(1), r.stopped_hours.toFixed(1), money(r.cpu), money(r.memory),
              money(r.disk), money(r.total, report.currency)].map((t) => h("td", {class: "num"}, t)))))));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(show, error, draw);
  });
  fill(main, h("h1", {}, "Costs"), form, error, box);
  await guarded(show, error, draw);
}
