"""Private networks: a bridge, a dnsmasq and bungalow's nft rules per network, the
addresses VMs hold on them, and the NICs the VM side asks for (docs/architecture.md,
"Private networks")."""
