"""Package data: the shipped inventories (local.yaml is what `lab up` starts from)."""
