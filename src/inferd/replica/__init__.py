"""Replica processes: each builds one API's Predictor once, then answers one request at a time."""
