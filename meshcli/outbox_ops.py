"""`mesh outbox`: the referral outbox as an operator sees it (DATABASE_URL, like the service).

Shows how many committed events wait for the relay, and every parked row with its reason. A
parked row is never retried by the relay; the operator finds the cause (log line with the
same position) and fixes or accepts it. Nothing shown here is personal data: positions, event
ids, topics and reason codes only.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=100, help="parked rows to list (oldest first)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")


def run(options, config) -> int:
    from services.referral.adapters.storage import ReferralStore, make_engine

    engine = make_engine(config.database_url)
    try:
        store = ReferralStore(engine)
        backlog, parked_count = store.outbox_backlog(), store.parked_count()
        parked = store.parked_rows(options.limit)
    finally:
        engine.dispose()
    if options.json:
        rows = [
            {
                "position": row.position,
                "event_id": row.event_id,
                "topic": row.topic,
                "reason": row.reason,
                "parked_at": row.parked_at.isoformat(),
            }
            for row in parked
        ]
        print(json.dumps({"unpublished": backlog, "parked": parked_count, "parked_rows": rows}, indent=2))
        return 0
    print(f"unpublished: {backlog}")
    print(f"parked: {parked_count}")
    for row in parked:
        when = f"{row.parked_at:%Y-%m-%d %H:%M:%S}"
        print(f"  position {row.position}  event {row.event_id}  topic {row.topic}  reason {row.reason}  at {when}")
    return 1 if parked_count else 0
