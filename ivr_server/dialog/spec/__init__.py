"""Declarative flows: YAML files read with their positions, checked, and turned into a Flow."""
