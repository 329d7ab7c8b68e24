"""`--set key.sub=value` overrides of a study: the one parser is var_model/overrides.py, shared with
`varscale train` (one dialect). Re-exported here for the study loader."""

from __future__ import annotations

from var_model.overrides import apply_overrides, parse_override

__all__ = ["apply_overrides", "parse_override"]
