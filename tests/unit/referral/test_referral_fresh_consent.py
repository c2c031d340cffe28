"""After the client withdrew consent, only consent recorded later opens a referral of the case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.referral.domain import ConsentMissing, check_fresh_consent
from services.referral.domain.errors import InvalidReferral

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
WITHDRAWN = NOW - timedelta(days=2)


def test_a_case_never_withdrawn_needs_no_recorded_moment():
    check_fresh_consent(None, None, NOW)


@pytest.mark.parametrize("recorded_at", [None, WITHDRAWN - timedelta(days=1), WITHDRAWN])
def test_consent_not_recorded_after_the_withdrawal_is_refused(recorded_at):
    with pytest.raises(ConsentMissing, match="withdrew consent"):
        check_fresh_consent(WITHDRAWN, recorded_at, NOW)


def test_consent_recorded_after_the_withdrawal_opens_the_case_again():
    check_fresh_consent(WITHDRAWN, WITHDRAWN + timedelta(seconds=1), NOW)


def test_consent_recorded_in_the_future_is_refused_as_invalid():
    with pytest.raises(InvalidReferral, match=r"consent\.recorded_at"):
        check_fresh_consent(None, NOW + timedelta(hours=1), NOW)
