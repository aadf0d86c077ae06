#!/usr/bin/env bash
# README.md's configuration table is the key table of the binary: every key that
# `cuvae train --help` lists is a row of README.md with the same default, and the README lists no
# key the binary does not know. Fails when one changes without the other.
set -euo pipefail
NAME=cli_readme
BIN=${1:?usage: $0 path/to/cuvae}
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d "${TMPDIR:-/tmp}/cuvae_${NAME}.XXXXXX")
trap 'rm -rf "$T"' EXIT

# "key<TAB>default" from the help text (a key line is "  section.key   = default").
"$BIN" train --help | awk '/^Configuration keys:/ { on = 1; next }
    on && /^  [a-z]+\.[a-z_]+ +=/ { k = $1; sub(/^[^=]*= /, ""); print k "\t" $0 }' |
    sort >"$T/help"
# The same from README.md's table rows: | `key` | `default` | ... |
sed -n 's/^| `\([a-z]*\.[a-z_]*\)` | `\([^`]*\)` |.*/\1\t\2/p' "$src/README.md" | sort >"$T/readme"

n=$(wc -l <"$T/help")
[ "$n" -ge 30 ] || { echo "$NAME: FAIL: only $n keys parsed from cuvae train --help"; exit 1; }
if ! diff -u "$T/help" "$T/readme" >"$T/diff"; then
    echo "$NAME: FAIL: README.md's key table differs from cuvae train --help (- help, + README):"
    grep '^[-+][a-z]' "$T/diff"
    exit 1
fi
echo "$NAME: ok ($n keys)"
