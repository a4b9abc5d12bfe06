"""Provisioning a guest at launch: cloud-init user-data and its NoCloud seed, SSH keys.

- :mod:`~bungalow.provision.userdata` checks user-data as cloud-init will read it;
- :mod:`~bungalow.provision.seed` writes the ``cidata`` seed QEMU attaches;
- :mod:`~bungalow.provision.sshkeys` checks public keys for ``authorized_keys``.

Pure checks and one host tool (cloud-localds); the daemon's VM service decides
when each is used, and the guest agent installs the keys.
"""
