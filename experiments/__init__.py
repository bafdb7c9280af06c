"""Runnable training recipes: ``python -m experiments.<recipe> --config.key=value``."""
