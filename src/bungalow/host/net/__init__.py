"""The host side of private networks: bridges, dnsmasq, nftables and the VMs' TAPs."""
