"""Exports: prepared data, features and generated images in other tools' layouts (``gill-eval export ...``).

The top data floor (docs/architecture.md): an export reads what the packages below it wrote and imports
nothing back into them.
"""
