"""Subcommands of `varscale` with more than a few lines of their own (fit, ui)."""
