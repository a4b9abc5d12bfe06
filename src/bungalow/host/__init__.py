"""host layer: what this machine has (CPUs, memory, disk, free ports) and, later, cgroups,
networks and jails for the VMs on it."""
