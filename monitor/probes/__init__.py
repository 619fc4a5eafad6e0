"""Probes of the monitor, one module per kind of target."""
