"""Project configuration: cortex.yaml / inferd.yaml -> typed, validated objects."""

# The names a project's config may have, in the order they are looked for. Here, not in load.py,
# so that a client command outside a project folder imports no config code (pydantic).
CONFIG_NAMES = ("cortex.yaml", "inferd.yaml", "cortex.yml", "inferd.yml")
