"""The executor daemon: the only process that touches Docker or Proxmox (arrives with issue 3)."""
