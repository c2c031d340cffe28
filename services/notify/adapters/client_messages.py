"""Client messages rendered from Jinja2 templates (templates/client/<template>.<lang>.txt.j2).

StrictUndefined: a template that uses a variable we do not pass fails loudly, in tests first.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import jinja2

from services.notify.domain.messages import CLIENT_TEMPLATES, LANGUAGES, MessageFacts

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "client"


class ClientMessages:
    def __init__(self, directory: Path = TEMPLATE_DIR):
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def render(self, template: str, language: str, facts: MessageFacts) -> str:
        if template not in CLIENT_TEMPLATES:
            raise KeyError(f"unknown client template {template!r}")
        if language not in LANGUAGES:
            raise KeyError(f"no texts in language {language!r}")
        return self.env.get_template(f"{template}.{language}.txt.j2").render(**facts.variables()).strip()

    def available(self) -> set[tuple[str, str]]:
        return {
            cast(tuple[str, str], tuple(name.removesuffix(".txt.j2").rsplit(".", 1)))
            for name in self.env.list_templates()
            if name.endswith(".txt.j2")
        }
