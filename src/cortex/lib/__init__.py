"""``cortex.lib``: the parts of Cortex v0.10's runtime package that handlers imported (its
logger), so a handler written inside Cortex's image loads in an inferd replica."""
