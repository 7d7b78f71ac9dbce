"""The app's reading of an audit: `gradlens.conclusions`, the sentences of report.html's first section, as Markdown."""
import re

from gradlens.conclusions import conclusions
from gradlens.report import NOTHING_TO_READ


def _escape(text: str) -> str:
    """Markdown's emphasis and Streamlit's LaTeX ($) shown as the characters they are."""
    return re.sub(r"([*_$~`\\])", r"\\\1", text)


def markdown(report) -> str:
    """The findings as bullets, then "What not to conclude" and the caveats as bullets."""
    found = conclusions(report)
    text = "\n".join(f"- {_escape(s)}" for s in found.findings) or NOTHING_TO_READ
    if found.caveats:
        text += "\n\n**What not to conclude**\n\n" + "\n".join(f"- {_escape(s)}" for s in found.caveats)
    return text
