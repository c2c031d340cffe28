"""Need domains: the areas of life a referral is about (a closed list of stable codes).

Referrals name their need domains, agencies offer them in the directory, and the referral
service matches the two. The codes are stable: a code once shipped stays valid, so referrals
stored under it keep their meaning. New codes are added at the end.

The list covers the sixteen areas in which the 2018 study's questionnaire asked sex workers about
problems (DESIGN.md section 1); ``STUDY_AREAS`` says which code each area is referred under.
Each code has a label in the five client languages (``LABELS``), and names the kind of regional
service whose binding rules decide the responsible region (``BINDING_SERVICE``), so a referral
about taxes or insurance gets a responsible region like any other.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType


class NeedDomain(str, Enum):
    SHELTER = "shelter"
    EXIT_PROGRAMME = "exit_programme"
    HEALTH = "health"
    INCOME = "income"
    HOUSING = "housing"
    LEGAL = "legal"
    WORK = "work"
    FINANCE = "finance"
    RESIDENCE = "residence"
    SAFETY = "safety"
    OTHER = "other"
    # Added for the study's areas that had no code (2026):
    ADVOCACY = "advocacy"
    ENFORCEMENT = "enforcement"
    GOVERNMENT = "government"
    BANKING = "banking"
    TAXES = "taxes"
    INSURANCE = "insurance"
    PERMITS = "permits"
    TREATMENT = "treatment"

    def __str__(self) -> str:  # the bare code (Python 3.11 would print 'NeedDomain.SHELTER')
        return self.value


NEED_DOMAINS = frozenset(d.value for d in NeedDomain)

# The sixteen areas of the 2018 study's questionnaire, and the code each is referred under.
STUDY_AREAS: MappingProxyType[str, NeedDomain] = MappingProxyType(
    {
        "work-related": NeedDomain.WORK,
        "advocacy": NeedDomain.ADVOCACY,
        "enforcement": NeedDomain.ENFORCEMENT,
        "government bodies": NeedDomain.GOVERNMENT,
        "exiting and other work": NeedDomain.EXIT_PROGRAMME,
        "housing": NeedDomain.HOUSING,
        "banking and money": NeedDomain.BANKING,
        "operators": NeedDomain.WORK,
        "clients": NeedDomain.SAFETY,
        "stigma and treatment": NeedDomain.TREATMENT,
        "residence in the Netherlands": NeedDomain.RESIDENCE,
        "taxes": NeedDomain.TAXES,
        "health": NeedDomain.HEALTH,
        "fraud and abuse": NeedDomain.SAFETY,
        "working from home": NeedDomain.PERMITS,
        "insurance": NeedDomain.INSURANCE,
    }
)

# Plain words, as a person would say them; no legal terms.
LABELS: MappingProxyType[NeedDomain, MappingProxyType[str, str]] = MappingProxyType(
    {
        domain: MappingProxyType(labels)
        for domain, labels in {
            NeedDomain.SHELTER: {
                "nl": "opvang",
                "en": "shelter",
                "es": "albergue",
                "pl": "schronienie",
                "ro": "adăpost",
            },
            NeedDomain.EXIT_PROGRAMME: {
                "nl": "hulp bij ander werk",
                "en": "help towards other work",
                "es": "ayuda para encontrar otro trabajo",
                "pl": "pomoc w znalezieniu innej pracy",
                "ro": "ajutor pentru a găsi altă muncă",
            },
            NeedDomain.HEALTH: {"nl": "gezondheid", "en": "health", "es": "salud", "pl": "zdrowie", "ro": "sănătate"},
            NeedDomain.INCOME: {"nl": "inkomen", "en": "income", "es": "ingresos", "pl": "dochód", "ro": "venit"},
            NeedDomain.HOUSING: {
                "nl": "woning",
                "en": "housing",
                "es": "vivienda",
                "pl": "mieszkanie",
                "ro": "locuință",
            },
            NeedDomain.LEGAL: {
                "nl": "juridische hulp",
                "en": "legal help",
                "es": "ayuda legal",
                "pl": "pomoc prawna",
                "ro": "ajutor juridic",
            },
            NeedDomain.WORK: {
                "nl": "werk en werkgevers",
                "en": "work and operators",
                "es": "trabajo y empleadores",
                "pl": "praca i pracodawcy",
                "ro": "muncă și angajatori",
            },
            NeedDomain.FINANCE: {
                "nl": "geld en schulden",
                "en": "money and debts",
                "es": "dinero y deudas",
                "pl": "pieniądze i długi",
                "ro": "bani și datorii",
            },
            NeedDomain.RESIDENCE: {
                "nl": "verblijf in Nederland",
                "en": "staying in the Netherlands",
                "es": "residencia en los Países Bajos",
                "pl": "pobyt w Holandii",
                "ro": "șederea în Țările de Jos",
            },
            NeedDomain.SAFETY: {
                "nl": "veiligheid",
                "en": "safety",
                "es": "seguridad",
                "pl": "bezpieczeństwo",
                "ro": "siguranță",
            },
            NeedDomain.OTHER: {
                "nl": "iets anders",
                "en": "something else",
                "es": "otra cosa",
                "pl": "coś innego",
                "ro": "altceva",
            },
            NeedDomain.ADVOCACY: {
                "nl": "belangenbehartiging",
                "en": "standing up for your rights",
                "es": "defensa de sus derechos",
                "pl": "obrona Twoich praw",
                "ro": "apărarea drepturilor dumneavoastră",
            },
            NeedDomain.ENFORCEMENT: {
                "nl": "controles door politie of gemeente",
                "en": "checks by police or the municipality",
                "es": "controles de la policía o del ayuntamiento",
                "pl": "kontrole policji lub gminy",
                "ro": "controale ale poliției sau ale primăriei",
            },
            NeedDomain.GOVERNMENT: {
                "nl": "contact met de overheid",
                "en": "dealing with government offices",
                "es": "trámites con la administración",
                "pl": "sprawy w urzędach",
                "ro": "relația cu instituțiile statului",
            },
            NeedDomain.BANKING: {
                "nl": "bankrekening en betalen",
                "en": "bank account and payments",
                "es": "cuenta bancaria y pagos",
                "pl": "konto bankowe i płatności",
                "ro": "cont bancar și plăți",
            },
            NeedDomain.TAXES: {"nl": "belasting", "en": "taxes", "es": "impuestos", "pl": "podatki", "ro": "impozite"},
            NeedDomain.INSURANCE: {
                "nl": "verzekeringen",
                "en": "insurance",
                "es": "seguros",
                "pl": "ubezpieczenia",
                "ro": "asigurări",
            },
            NeedDomain.PERMITS: {
                "nl": "vergunning en thuiswerken",
                "en": "permits and working from home",
                "es": "licencias y trabajo desde casa",
                "pl": "zezwolenia i praca w domu",
                "ro": "autorizații și lucrul de acasă",
            },
            NeedDomain.TREATMENT: {
                "nl": "hoe instanties u behandelen",
                "en": "how offices and services treat you",
                "es": "cómo le tratan las instituciones",
                "pl": "jak traktują Cię instytucje",
                "ro": "cum vă tratează instituțiile",
            },
        }.items()
    }
)

# The regional service whose binding rules decide the responsible region for a referral in this
# domain (the service kinds of the region policy). A referral naming several domains uses the
# first that is a service kind itself, else the first domain's entry here.
BINDING_SERVICE: MappingProxyType[NeedDomain, str] = MappingProxyType(
    {
        NeedDomain.SHELTER: "shelter",
        NeedDomain.EXIT_PROGRAMME: "exit_programme",
        NeedDomain.HEALTH: "health",
        NeedDomain.INCOME: "income",
        NeedDomain.HOUSING: "housing",
        NeedDomain.LEGAL: "legal",
        NeedDomain.WORK: "legal",
        NeedDomain.FINANCE: "income",
        NeedDomain.RESIDENCE: "legal",
        NeedDomain.SAFETY: "shelter",
        NeedDomain.OTHER: "shelter",
        NeedDomain.ADVOCACY: "legal",
        NeedDomain.ENFORCEMENT: "legal",
        NeedDomain.GOVERNMENT: "legal",
        NeedDomain.BANKING: "income",
        NeedDomain.TAXES: "income",
        NeedDomain.INSURANCE: "income",
        NeedDomain.PERMITS: "legal",
        NeedDomain.TREATMENT: "legal",
    }
)


def label(domain: NeedDomain | str, language: str) -> str:
    """The domain in plain words in one of the five client languages (KeyError otherwise)."""
    return LABELS[NeedDomain(domain)][language]


def binding_service(domains: list[str] | tuple[str, ...], service_kinds: frozenset[str]) -> str:
    """The service kind whose rules decide the region for a referral in these domains: the first
    domain that is a service kind itself, else the first known domain's binding service; shelter
    when none is named (help asked for in general). An unknown code is returned as it is, so the
    caller refuses it as an unknown service rather than guessing."""
    codes = [d.lower() for d in domains]
    direct = next((c for c in codes if c in service_kinds), None)
    if direct is not None:
        return direct
    known = next((NeedDomain(c) for c in codes if c in NEED_DOMAINS), None)
    if known is not None:
        return BINDING_SERVICE[known]
    return codes[0] if codes else "shelter"
