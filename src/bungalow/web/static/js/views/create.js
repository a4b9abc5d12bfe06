// #/new: make a VM as `bungalow launch` does (POST /v1/vms with the same body), then follow
// it on /live until it runs.

import {get, post} from "../api.js";
import {errorLine, field, fill, h} from "../dom.js";
import {size} from "../format.js";
import {live, subscribe} from "../live.js";

const ACTIONS = ["stop", "suspend", "snapshot-and-delete", "delete"];

function input(testid, attrs = {}) {
  return h("input", {id: testid, name: testid, "data-testid": testid, ...attrs});
}

function select(testid, options, attrs = {}) {
  return h("select", {id: testid, name: testid, "data-testid": testid, ...attrs},
    options.map(([value, text]) => h("option", {value}, text)));
}

/** The body of POST /v1/vms from the form: only what was given, typed as the API wants. */
export function createBody(values, images) {
  const body = {name: values.name.trim(), cpus: Number(values.cpus), memory: values.memory.trim()};
  const image = images.find((img) => img.name === values.image || img.id === values.image);
  if (image && image.kind === "iso") body.iso = image.name;
  else if (values.image) body.image = values.image;
  const optional = ["disk", "profile", "ttl", "on_expiry", "owner", "cpu_cap", "memory_limit",
                    "disk_iops", "disk_bw", "net_bw", "memory_min"];
  for (const key of optional) {
    const value = (values[key] || "").trim();
    if (value) body[key] = value;
  }
  if ((values.cpu_weight || "").trim()) body.cpu_weight = Number(values.cpu_weight);
  if (values.network) body.networks = [values.network];
  const ports = (values.ports || "").split(/[\s,]+/).filter(Boolean);
  if (ports.length) body.ports = ports;
  if ((values.user_data || "").trim()) body.user_data = values.user_data;
  return body;
}

export async function render(main) {
  const [images, networks] = await Promise.all([
    get("/v1/images"),
    get("/v1/networks").catch((err) => ({refused: err.status === 403
      ? "Private networks are the host admin's to give: this VM gets user-mode networking."
      : err.message})),
  ]);
  const bootable = images.filter((img) => img.arch === "x86_64" || img.kind === "iso");
  const imageOptions = bootable.map((img) => [img.name,
    `${img.name} — ${img.kind === "iso" ? "installer ISO" : img.kind === "disk" ? "disk image (pc, no agent)" : img.flavour} `
    + `(${size(img.virtual_size)})`]);
  const form = {
    name: input("create-name", {required: true, autocomplete: "off", placeholder: "web-1"}),
    image: select("create-image", imageOptions.length ? imageOptions : [["", "no images: build one with `bungalow image build`"]]),
    cpus: input("create-cpus", {type: "number", min: 1, max: 64, value: 1, required: true}),
    memory: input("create-memory", {value: "512M", required: true, size: 8}),
    disk: input("create-disk", {placeholder: "image's size", size: 8}),
    profile: select("create-profile", [["", "the image's"], ["micro", "micro (microvm)"], ["pc", "pc (q35)"]]),
    network: select("create-network", [["", "user-mode (no private network)"],
      ...(Array.isArray(networks) ? networks.map((n) => [n.name, `${n.name} (${n.subnet})`]) : [])]),
    ports: input("create-ports", {placeholder: "8080:80, 2222:22", size: 16}),
    ttl: input("create-ttl", {placeholder: "2h", size: 6}),
    on_expiry: select("create-on-expiry", [["", "the daemon's default"], ...ACTIONS.map((a) => [a, a])]),
    owner: input("create-owner", {placeholder: "person or team", size: 12}),
    cpu_weight: input("create-cpu-weight", {type: "number", min: 1, max: 10000, placeholder: "100"}),
    cpu_cap: input("create-cpu-cap", {placeholder: "0.5", size: 6}),
    memory_limit: input("create-memory-limit", {placeholder: "1G", size: 6}),
    disk_iops: input("create-disk-iops", {placeholder: "500", size: 6}),
    disk_bw: input("create-disk-bw", {placeholder: "100M", size: 6}),
    net_bw: input("create-net-bw", {placeholder: "50M", size: 6}),
    memory_min: input("create-memory-min", {placeholder: "256M", size: 6}),
    user_data: h("textarea", {id: "create-user-data", "data-testid": "create-user-data", rows: 4,
                              cols: 60, spellcheck: false, placeholder: "#cloud-config\npackages: [nginx]"}),
  };
  const defaultImage = bootable.find((img) => img.name === "debian-12")
    || bootable.find((img) => img.kind === "linux");
  if (defaultImage) form.image.value = defaultImage.name;
  const submit = h("button", {type: "submit", "data-testid": "create-submit"}, "Create and start");
  const error = errorLine("create-error");
  const progress = h("p", {class: "muted", role: "status", "aria-live": "polite", "data-testid": "create-progress"});
  let stopFollowing = () => {};

  const el = h("form", {class: "card create", "data-testid": "create-form", noValidate: true},
    h("h1", {}, "New VM"),
    h("div", {class: "columns"},
    h("fieldset", {}, h("legend", {}, "Machine"),
      field("Name", form.name),
      field("Image or ISO", form.image, "An ISO makes an installer VM: a blank disk of Disk's size and the ISO in its CD-ROM."),
      h("div", {class: "row"}, field("CPUs", form.cpus), field("Memory", form.memory),
        field("Disk", form.disk, "e.g. 10G; at least the image's"), field("Profile", form.profile))),
    h("fieldset", {}, h("legend", {}, "Network"),
      h("div", {class: "row"}, field("Private network", form.network,
        Array.isArray(networks) ? null : networks.refused),
        field("Forwarded ports", form.ports, "HOST:GUEST, comma-separated"))),
    h("fieldset", {}, h("legend", {}, "Limits (empty: none)"),
      h("div", {class: "row"}, field("CPU weight", form.cpu_weight), field("CPU cap", form.cpu_cap, "CPUs"),
        field("Memory limit", form.memory_limit), field("Disk IOPS", form.disk_iops),
        field("Disk bandwidth", form.disk_bw, "bytes/s"), field("Net bandwidth", form.net_bw, "bytes/s"),
        field("Memory floor", form.memory_min, "the balloon may take it down to this"))),
    h("fieldset", {}, h("legend", {}, "Lease and owner"),
      h("div", {class: "row"}, field("Lease", form.ttl, "e.g. 2h; empty: none"),
        field("At its end", form.on_expiry), field("Owner", form.owner)))),
    h("fieldset", {}, h("legend", {}, "cloud-init user-data (optional; server images run cloud-init, micro ones do not)"), form.user_data),
    h("div", {class: "row"}, submit, h("a", {href: "#/vms", class: "button secondary"}, "Cancel")),
    error, progress);

  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const values = Object.fromEntries(Object.entries(form).map(([key, control]) => [key, control.value]));
    if (!values.name.trim()) {
      error.say("Give the VM a name: lower-case letters, digits and dashes (not at either end), 63 at most.");
      form.name.focus();
      return;
    }
    const body = createBody(values, images);
    submit.disabled = true;
    progress.textContent = `Creating ${body.name}…`;
    stopFollowing = follow(body.name, progress);
    try {
      const vm = await post("/v1/vms", body);
      progress.textContent = `${vm.name} is ${vm.state}.`;
      location.hash = `#/vms/${encodeURIComponent(vm.name)}`;
    } catch (err) {
      progress.textContent = "";
      error.say(err.message);
    } finally {
      stopFollowing();
      submit.disabled = false;
    }
  });
  fill(main, el);
  form.name.focus();
  return () => stopFollowing();
}

/** Say the new VM's state as /live reports it while the create request runs. */
function follow(name, line) {
  const started = Date.now();
  const say = () => {
    const vm = live.vms.get(name);
    const seconds = Math.round((Date.now() - started) / 1000);
    line.textContent = vm ? `${name} is ${vm.state}${vm.operation ? ` (${vm.operation})` : ""}… ${seconds}s`
                          : `Creating ${name}… ${seconds}s`;
  };
  const unsubscribe = subscribe("vms", say);
  const timer = setInterval(say, 1000);
  return () => { unsubscribe(); clearInterval(timer); };
}
