"""Verification: testinfra hosts for nodes and pods, the pytest plugin, and `lab verify`."""
