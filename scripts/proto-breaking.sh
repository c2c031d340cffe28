#!/usr/bin/env bash
# buf breaking against the last released contract, then a self-test that the check bites.
#
# The released contract is the git tag named by $release. A clone without the tag (a shallow
# CI checkout) compares against proto/$release.binpb, the descriptor image buf built from that
# same release and committed beside the contracts (`make proto-image`). At a new contract
# release: tag it, point $release at the tag and rebuild the image.
#
# The self-test copies proto/ and buf.yaml to a temporary folder, changes one field's tag
# number there and expects `buf breaking` to refuse the copy (and to accept an unchanged copy).
#   BUF=path/to/buf scripts/proto-breaking.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
buf=${BUF:-buf}
[[ $buf == /* ]] || buf="$repo/$buf"
release=contracts-v1
image="$repo/proto/$release.binpb"

if git rev-parse -q --verify "refs/tags/$release" >/dev/null 2>&1; then
    against=".git#tag=$release,subdir=proto"
    echo "proto-breaking: proto/ against the tag $release"
else
    against="$image"
    echo "proto-breaking: proto/ against proto/$release.binpb (no tag $release in this clone)"
fi
"$buf" breaking proto --against "$against"

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r proto buf.yaml "$copy/"
(cd "$copy" && "$buf" breaking proto --against "$image") \
    || { echo "proto-breaking self-test: an unchanged copy of proto/ was refused" >&2; exit 1; }
envelope="$copy/proto/referralmesh/v1/events.proto"
sed -i 's/^  string case_id = 2;/  string case_id = 99;/' "$envelope"
grep -q '^  string case_id = 99;' "$envelope" \
    || { echo "proto-breaking self-test: EventEnvelope.case_id = 2 not found to change" >&2; exit 1; }
if (cd "$copy" && "$buf" breaking proto --against "$image" >"$copy/out.txt" 2>&1); then
    echo "proto-breaking self-test: a changed tag number was NOT detected" >&2
    exit 1
fi
echo "proto-breaking self-test: a changed tag number is refused:"
sed 's/^/  /' "$copy/out.txt" | head -5
