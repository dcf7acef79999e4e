"""The node agent: the code that runs on a node (standard library only, shipped as one zipapp)."""
