"""The networks. Processes that train or sample them live one level up (diffusion.py, autoregressive.py, hybrid.py)."""
