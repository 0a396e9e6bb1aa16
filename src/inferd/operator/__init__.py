"""Composes gateway + engine: ``inferd serve`` in the foreground, the background operator."""
