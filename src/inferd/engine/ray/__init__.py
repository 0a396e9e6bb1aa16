"""The ``ray`` backend: each API as a Ray Serve application (the only code that imports ray).

``plan`` (project -> Serve options), ``status`` (Serve's state -> inferd's statuses) and
``routes`` (V2 / TF Serving paths) are pure; ``cluster`` is the one wrapper around Ray calls;
``replica`` is what runs inside Ray; ``backend`` is what the CLI uses for ``-e NAME``.
"""
