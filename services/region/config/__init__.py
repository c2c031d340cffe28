"""Holds regions.yaml. A package only so that setuptools ships the YAML file with the code."""
