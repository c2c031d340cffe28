"""Every client template renders in every language, with no missing variable (StrictUndefined)."""

import re

import jinja2
import pytest

from services.notify.adapters.client_messages import TEMPLATE_DIR, ClientMessages
from services.notify.adapters.ui_text import TEXT
from services.notify.domain.messages import CLIENT_TEMPLATES, LANGUAGES, MessageFacts

FACTS = MessageFacts(
    organisation="ORG-X",
    region="REGION-Y",
    handover_region="REGION-Z",
    help_name="HELP-N",
    help_phone="PHONE-P",
    help_url="URL-U",
)
# Words we never use about clients (DESIGN.md section 5), in the five languages.
DISRESPECTFUL = re.compile(r"prostitu|victim|slachtoffer|víctima|victima|ofiar|probleemgeval|hoer", re.I)


def test_there_is_a_template_for_every_message_in_every_language_and_nothing_else():
    assert ClientMessages().available() == {(t, lang) for t in CLIENT_TEMPLATES for lang in LANGUAGES}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", CLIENT_TEMPLATES)
def test_every_template_renders_in_every_language_with_all_its_facts(template, language):
    text = ClientMessages().render(template, language, FACTS)
    assert "ORG-X" in text and "REGION-Y" in text  # who is responsible now
    assert "PHONE-P" in text and "URL-U" in text and "HELP-N" in text  # where to ask
    if template == "client_handover_proposed":
        assert "REGION-Z" in text
    assert "{{" not in text and "}}" not in text
    assert not DISRESPECTFUL.search(text)
    # Plain words: short sentences.
    sentences = [s for s in re.split(r"[.?!]\s", text) if s.strip()]
    assert max(len(s.split()) for s in sentences) <= 25


def test_a_template_using_a_variable_we_do_not_pass_fails_loudly(tmp_path):
    (tmp_path / "client_responsible_region.nl.txt.j2").write_text("Hallo {{ name_of_client }}")
    with pytest.raises(jinja2.UndefinedError):
        ClientMessages(tmp_path).render("client_responsible_region", "nl", FACTS)


def test_unknown_templates_and_languages_are_refused():
    with pytest.raises(KeyError):
        ClientMessages().render("client_secret_plans", "nl", FACTS)
    with pytest.raises(KeyError):
        ClientMessages().render("client_responsible_region", "de", FACTS)


def test_the_dashboard_says_the_same_things_in_dutch_and_english():
    def keys(tree, prefix=""):
        return {prefix + k for k, v in tree.items()} | {
            f"{prefix}{k}.{sub}" for k, v in tree.items() if isinstance(v, dict) for sub in keys(v)
        }

    assert keys(TEXT["nl"]) == keys(TEXT["en"])
    for language in TEXT.values():
        assert not DISRESPECTFUL.search(str(language))


def test_template_files_are_all_used():
    assert len(list(TEMPLATE_DIR.glob("*.txt.j2"))) == len(CLIENT_TEMPLATES) * len(LANGUAGES)
