"""The parent run's description (MLflow's `mlflow.note.content`, shown on the run's page):
the study summary, written at launch, and the law table, written by `varscale fit`.

The note is Markdown made of `## ` sections; each writer replaces its own section and keeps the
others, so a relaunch does not erase the laws and a refit does not erase the summary.
"""

from __future__ import annotations

from analysis.mlflow_schema import DRY_RUN_FILE, FITS_ARTIFACT_FOLDER, TAG_VALUE_LIMIT, redact_uri
from orchestration.study.dry_run import dry_run_table
from orchestration.study.spec import StudySpec

STUDY_HEADING = "## Study"
LAWS_HEADING = "## Scaling laws"
SECTION_ORDER = (STUDY_HEADING, LAWS_HEADING)
SECTION_MARK = "## "
# A section's text is cut to this (MLflow cuts a tag value at 8,000 characters; two sections fit).
SECTION_LIMIT = TAG_VALUE_LIMIT // 2 + 1000


def code_block(text: str, limit: int, where: str) -> str:
    """Text as a Markdown code block, cut to `limit` characters with a pointer to the full text."""
    if len(text) > limit:
        text = text[:limit].rsplit("\n", 1)[0] + f"\n... (cut here; the full text: {where})"
    return f"```\n{text}\n```"


def study_summary(spec: StudySpec) -> str:
    budgets = spec.budgets.values
    per_depth = isinstance(budgets, dict)
    lines = [
        f"{STUDY_HEADING} {spec.name}",
        "",
        f"- depths {list(spec.model.depths)}, seeds {list(spec.seeds)}",
        f"- budgets ({spec.budgets.kind}, {spec.budgets.strategy}): "
        + (
            ", ".join(f"d{depth}: {list(values)}" for depth, values in budgets.items())
            if per_depth
            else str(list(budgets))
        ),
        f"- MLflow {redact_uri(spec.tracking_uri)}, storage `{spec.storage}`",
        "",
        f"The dry run (artifact `{DRY_RUN_FILE}`):",
        "",
    ]
    return "\n".join(lines) + code_block(dry_run_table(spec), SECTION_LIMIT - 500, DRY_RUN_FILE)


def laws_section(law_table: str, figures: list[str]) -> str:
    lines = [LAWS_HEADING, "", code_block(law_table, SECTION_LIMIT - 500, f"{FITS_ARTIFACT_FOLDER}/laws.csv"), ""]
    if figures:
        lines.append(
            f"Figures (artifacts under `{FITS_ARTIFACT_FOLDER}/`): " + ", ".join(f"`{name}`" for name in figures)
        )
    return "\n".join(lines)


def _sections(note: str) -> dict[str, str]:
    """Heading (its first word after '## ') -> the section's text, in note order."""
    sections: dict[str, str] = {}
    heading = None
    for line in note.splitlines():
        if line.startswith(SECTION_MARK):
            heading = _heading_of(line)
            sections[heading] = line
        elif heading is not None:
            sections[heading] += "\n" + line
    return sections


def _heading_of(line: str) -> str:
    for heading in SECTION_ORDER:
        if line == heading or line.startswith(heading + " "):
            return heading
    return line


def replace_section(note: str, heading: str, text: str) -> str:
    """The note with `heading`'s section replaced by `text` (which starts with the heading)."""
    sections = _sections(note)
    sections[heading] = text.rstrip("\n")
    ordered = [sections[name] for name in SECTION_ORDER if name in sections]
    ordered += [body for name, body in sections.items() if name not in SECTION_ORDER]
    return "\n\n".join(body.rstrip("\n") for body in ordered) + "\n"
