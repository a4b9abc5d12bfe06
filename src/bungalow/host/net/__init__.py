"""What a private network asks of the host kernel, one small module each.

- :mod:`.naming`: the names of one daemon's kernel objects (bridges, nft table);
- :mod:`.subnets`: subnet arithmetic, the host's routes and addresses, picking addresses;
- :mod:`.bridge`: Linux bridges through rtnetlink (pyroute2);
- :mod:`.dnsmasq`: one dnsmasq per network for DHCP and DNS, its files and its process;
- :mod:`.nftables`: bungalow's own nft table, rendered whole from data and applied atomically;
- :mod:`.docker`: Docker's ``DOCKER-USER`` convention, so a Docker host's FORWARD policy of
  drop does not drop bungalow's traffic;
- :mod:`.hostsfile`: a managed block in ``/etc/hosts`` so the host resolves VM names;
- :mod:`.tap`: the TAP each NIC of a VM plugs into its network's bridge, handed to QEMU.

Everything here needs root; nothing here knows the daemon's database.
"""
