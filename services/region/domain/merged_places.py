"""One sentence per merged municipality the client named, in every catalogue language.

A client who lived in Weesp until 2022 may still say "Weesp"; the decision counts it for
Amsterdam, and the explanation says so, naming the current municipality (Dutch place names in
every language, as in the rest of the explanation).
"""

from __future__ import annotations

from .decision import Renamed

MERGED: dict[str, str] = {
    "nl": "{old} hoort sinds {year} bij de gemeente {new}. Wat u over {old} vertelde, telt daarom voor {new}.",
    "en": "{old} has been part of the municipality of {new} since {year}. So what you told us about {old} counts for {new}.",
    "es": "Desde {year}, {old} forma parte del municipio de {new}. Por eso, lo que nos dijo sobre {old} cuenta para {new}.",
    "pl": "Od {year} r. {old} należy do gminy {new}. Dlatego to, co nam o tym powiedziano, liczy się dla gminy {new}.",
    "ro": "Din {year}, {old} face parte din municipalitatea {new}. De aceea, ce ne-ați spus despre {old} contează pentru {new}.",
}


def merged_sentences(renamed: tuple[Renamed, ...], language: str) -> list[str]:
    return [MERGED[language].format(old=r.name, new=r.now_name, year=r.since.year) for r in renamed]
