#!/bin/sh
# tests/regen.sh FUSEC [DIR] - regenerates the committed C of every example.
#
# For each dsl-examples/NAME.fdl that declares a block, runs
#   FUSEC dsl-examples/NAME.fdl -o DIR/NAME.c        (writes NAME.c and NAME.h)
# DIR defaults to generated/.  Files in DIR whose example is gone are removed,
# so DIR always mirrors dsl-examples/ exactly.  `make regen` runs this;
# tests/generated/run.sh runs it into a temporary DIR and diffs.
set -u
FUSEC=${1:-build/fusec}
DIR=${2:-generated}
mkdir -p "$DIR" || exit 1
status=0
names=
for fdl in dsl-examples/*.fdl; do
    [ -f "$fdl" ] || continue
    # imported libraries hold only dims, consts and fns: nothing to emit
    grep -Eq '^[[:space:]]*block[[:space:]]' "$fdl" || continue
    name=$(basename "$fdl" .fdl)
    names="$names $name"
    # a model written from its config.json: compiled with the config beside it
    config=
    [ -f "${fdl%.fdl}.config.json" ] && config="--config=${fdl%.fdl}.config.json"
    if ! "$FUSEC" $config "$fdl" -o "$DIR/$name.c"; then
        echo "regen: $FUSEC $fdl failed" >&2
        status=1
    fi
done
for f in "$DIR"/*.c "$DIR"/*.h; do
    [ -f "$f" ] || continue
    base=$(basename "$f")
    base=${base%.[ch]}
    case " $names " in
    *" $base "*) ;;
    *) rm -f "$f" && echo "regen: removed stale $f" ;;
    esac
done
exit $status
