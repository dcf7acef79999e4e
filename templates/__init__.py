"""Package data: the Jinja2 templates the lab renders (see orchestrator/core/render.py)."""
