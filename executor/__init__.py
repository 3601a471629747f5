"""The executor daemon: the only process that touches Docker or Proxmox, and the authority on what runs."""
