"""Fusing finished runs into one: ensembles, model soups and WiSE-FT (run.py runs a fusion)."""
