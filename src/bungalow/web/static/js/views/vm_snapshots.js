// The snapshots tab: list, take, restore, clone and delete the VM's snapshots.

import {del, get, post, vmPath} from "../api.js";
import {errorLine, field, fill, guarded, h} from "../dom.js";
import {size, when} from "../format.js";

export async function mount(panel, ctx) {
  const name = h("input", {id: "snapshot-name", "data-testid": "snapshot-name", placeholder: "before-upgrade",
                           autocomplete: "off"});
  const take = h("button", {type: "submit", "data-testid": "snapshot-create"}, "Take snapshot");
  const cloneName = h("input", {id: "clone-name", "data-testid": "clone-name", placeholder: `${ctx.name}-copy`,
                                autocomplete: "off"});
  const error = errorLine("snapshot-error");
  const done = h("p", {class: "muted", role: "status", "aria-live": "polite", "data-testid": "snapshot-done"});
  const tbody = h("tbody", {});
  // Restore and delete lose something (the VM's state since, or the snapshot): asked first.
  const question = h("p", {"data-testid": "snapshot-confirm-text"});
  const confirm = h("dialog", {"data-testid": "snapshot-confirm"}, question,
    h("form", {method: "dialog", class: "row"},
      h("button", {value: "cancel", "data-testid": "snapshot-confirm-cancel", autofocus: true}, "Keep it"),
      h("button", {value: "yes", class: "danger", "data-testid": "snapshot-confirm-yes"}, "Go ahead")));
  let confirmed = () => {};
  confirm.onclose = () => { if (confirm.returnValue === "yes") confirmed(); };
  const ask = (sentence, then) => {
    question.textContent = sentence;
    confirmed = then;
    confirm.returnValue = "";
    confirm.showModal();
  };
  const form = h("form", {class: "row"}, field("Snapshot name", name), take);

  async function load() {
    const list = await get(vmPath(ctx.name, "/snapshots"));
    fill(tbody, list.length ? list.map(row)
      : h("tr", {}, h("td", {colspan: 6, class: "muted", "data-testid": "snapshot-empty"}, "No snapshots yet.")));
  }

  function row(snap) {
    const button = (label, testid, run, cls, question) => {
      const b = h("button", {type: "button", "data-testid": testid, class: cls || ""}, label);
      const act = async () => {
        done.textContent = "";
        const answer = await guarded(b, error, run);
        if (answer !== undefined) {
          done.textContent = typeof answer === "string" ? answer : "";
          await load().catch((err) => error.say(err.message));
        }
      };
      b.onclick = () => (question ? ask(question, act) : act());
      return b;
    };
    return h("tr", {"data-testid": "snapshot-row", "data-snapshot": snap.name},
      h("td", {}, snap.name),
      h("td", {}, snap.kind === "full" ? "memory + disk" : "disk"),
      h("td", {}, when(snap.created)),
      h("td", {class: "num"}, size(snap.size)),
      h("td", {}, snap.used_by.length ? snap.used_by.join(", ") : "-"),
      h("td", {class: "row"},
        button("Restore", "snapshot-restore", async () => {
          await post(vmPath(ctx.name, `/snapshots/${encodeURIComponent(snap.name)}/restore`));
          return `${ctx.name} is back at ${snap.name}.`;
        }, "", `Restore ${ctx.name} to ${snap.name}? What it did since is lost.`),
        button("Clone", "snapshot-clone", async () => {
          const target = cloneName.value.trim();
          if (!target) throw new Error("Type the new VM's name in Clone as first.");
          const vm = await post(vmPath(ctx.name, "/clone"), {name: target, snapshot: snap.name});
          return `${vm.name} was made from ${snap.name}; it is ${vm.state}.`;
        }),
        button("Delete", "snapshot-delete", async () => {
          await del(vmPath(ctx.name, `/snapshots/${encodeURIComponent(snap.name)}`));
          return `${snap.name} is deleted.`;
        }, "danger", `Delete the snapshot ${snap.name}? This cannot be undone.`)));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    done.textContent = "";
    const taken = await guarded(take, error, () => post(vmPath(ctx.name, "/snapshots"), {name: name.value.trim()}));
    if (taken) {
      done.textContent = `${taken.name} is taken (${taken.kind === "full" ? "memory and disk" : "disk only"}).`;
      name.value = "";
      await load().catch((err) => error.say(err.message));
    }
  });

  fill(panel, form, error, done, confirm,
    h("table", {class: "list", "data-testid": "snapshot-table"},
      h("thead", {}, h("tr", {}, ["Name", "Holds", "Taken", "Size", "Used by", ""].map((t) => h("th", {scope: "col"}, t)))),
      tbody),
    h("div", {class: "row"}, field("Clone as", cloneName, "a new VM's name, then Clone on a snapshot's row")));
  await load().catch((err) => error.say(err.message));
  return {show() { load().catch((err) => error.say(err.message)); }};
}
