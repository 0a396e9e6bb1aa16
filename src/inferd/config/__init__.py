"""Project configuration: cortex.yaml / inferd.yaml -> typed, validated objects."""
