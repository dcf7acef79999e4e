"""The Gateway API and Ingress: how HTTP traffic enters the cluster through the lab's proxy (docs/edge.md)."""
