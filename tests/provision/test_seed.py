"""The NoCloud seed: meta-data names the VM's id and name; cloud-localds makes an ISO 9660
volume labelled cidata holding both files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from bungalow.provision.seed import SEED, build_seed, meta_data


def test_meta_data_is_the_vms_id_and_name() -> None:
    assert yaml.safe_load(meta_data("0a1b2c3d4e5f", "web")) == {
        "instance-id": "0a1b2c3d4e5f",
        "local-hostname": "web",
    }
    with_keys = yaml.safe_load(meta_data("i", "web", ["ssh-ed25519 AAAA x"]))
    assert with_keys["public-keys"] == ["ssh-ed25519 AAAA x"]


def test_the_seed_is_a_cidata_volume_with_both_files(tmp_path: Path) -> None:
    user_data = "#cloud-config\nruncmd: [[touch, /x]]\n"
    seed = build_seed(tmp_path, user_data, instance_id="0a1b2c3d4e5f", hostname="web")
    assert seed == tmp_path / SEED
    assert sorted(p.name for p in tmp_path.iterdir()) == [SEED]  # the work files are gone
    label = subprocess.run(
        ["blkid", "-o", "value", "-s", "LABEL", seed], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert label == "cidata"

    def extract(name: str) -> str:
        return subprocess.run(
            ["isoinfo", "-J", "-i", seed, "-x", f"/{name}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    assert extract("user-data") == user_data
    assert yaml.safe_load(extract("meta-data"))["instance-id"] == "0a1b2c3d4e5f"
