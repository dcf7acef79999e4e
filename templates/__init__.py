"""Package data: the Jinja2 templates the lab renders (see orchestrator/render.py)."""
