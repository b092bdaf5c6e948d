"""Who may call: access keys, their grants, and the signatures that prove a caller holds one."""
