"""cluster-lab: a Kubernetes-style network built from real kernel parts, driven over SSH."""

__version__ = "0.1.0"
