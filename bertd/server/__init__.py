"""The aiohttp application: app factory and its cleanup contexts, URL table, configuration, errors,
auth, logging, systemd and Prometheus. May import api/, schema/, state/, runtime/; never training/."""
