"""tests/app holds a Node package: pytest must not walk its node_modules or generated clients."""

collect_ignore_glob = ["node_modules", "generated"]
