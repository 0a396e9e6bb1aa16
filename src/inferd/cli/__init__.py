"""The ``inferd`` command line."""
