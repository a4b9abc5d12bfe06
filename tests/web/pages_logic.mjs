// The pages' pure functions, run by node (tests/web/test_pages_static.py): what the create
// dialog and the limits form send, and numbers as the CLI prints them.
import assert from "node:assert/strict";

import {exactSize, lease, money, size, sizeFine} from "../../src/bungalow/web/static/js/format.js";
import {createBody} from "../../src/bungalow/web/static/js/views/create.js";
import {limitsBody, limitText} from "../../src/bungalow/web/static/js/views/vm_limits.js";

const images = [
  {name: "debian-12", id: "77882f5a3f01", kind: "linux"},
  {name: "installer", id: "aa11", kind: "iso"},
];
const blank = {name: " web ", cpus: "2", memory: "1G", image: "debian-12", disk: "", profile: "",
               network: "", ports: "", ttl: "", on_expiry: "", owner: "", cpu_weight: "",
               cpu_cap: "", memory_limit: "", disk_iops: "", disk_bw: "", net_bw: "", memory_min: "",
               user_data: ""};

// Only what was given, typed as the API's strict schema wants (cpus a number, sizes text).
assert.deepEqual(createBody(blank, images), {name: "web", cpus: 2, memory: "1G", image: "debian-12"});
assert.deepEqual(
  createBody({...blank, image: "installer", disk: "8G", network: "lab", ports: "8080:80, 2222:22",
              ttl: "2h", on_expiry: "stop", cpu_weight: "200", cpu_cap: "0.5", memory_min: " 512M ",
              user_data: "#cloud-config\n"}, images),
  {name: "web", cpus: 2, memory: "1G", iso: "installer", disk: "8G", networks: ["lab"],
   ports: ["8080:80", "2222:22"], ttl: "2h", on_expiry: "stop", cpu_weight: 200, cpu_cap: "0.5",
   memory_min: "512M", user_data: "#cloud-config\n"});

// Limits: only changed fields; an emptied field lifts the limit; sizes shown exactly.
const current = {cpu_weight: 100, disk_bw: 104857600};
assert.equal(limitText("disk_bw", 104857600), "100M");
assert.equal(limitText("disk_iops", 500), "500");
assert.equal(limitText("net_bw", undefined), "");
assert.deepEqual(limitsBody({cpu_weight: "100", disk_bw: "100M"}, current), {});
assert.deepEqual(limitsBody({cpu_weight: "300", disk_bw: "", cpu_cap: "0.5"}, current),
                 {cpu_weight: 300, disk_bw: "none", cpu_cap: "0.5"});
assert.deepEqual(limitsBody({cpu_weight: "", disk_bw: "100M"}, current), {cpu_weight: 100});

// Numbers as `bungalow ls` shows them.
assert.equal(size(536870912), "512M");
assert.equal(size(1610612736), "1.5G");
assert.equal(size(0), "-");
assert.equal(money(0.00061, "USD"), "0.0006 USD");
assert.equal(money(1234.5, "USD"), "1,234.50 USD");
assert.equal(exactSize(1000), "1000");
assert.equal(sizeFine(264552448), "252.3M");
assert.equal(exactSize(1536 * 1024 * 1024), "1536M");
assert.equal(lease({expires_in: null}), "-");
assert.equal(lease({expires_in: 7200}), "in 2h");
assert.equal(lease({expires_in: 300, lease_warned: true}), "in 5m !");
assert.equal(lease({expires_in: -5}), "now");
assert.equal(lease({expires_in: null, pooled: true}), "pool");
console.log("ok");
