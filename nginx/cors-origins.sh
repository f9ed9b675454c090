#!/bin/sh
# Writes nginx's CORS allowlist from CORS_ORIGINS, the API's own comma-separated list, as entries of
# the `map $http_origin` in default.conf: an allowed origin is echoed, `*` allows every origin.
# nginx's image runs this at start (mounted into /docker-entrypoint.d/ by docker-compose.yml);
# scripts/local_stack.py runs it into its rendered copy. An origin that is not scheme://host[:port]
# is refused, so nothing a setting holds can change the config around it.
#
#     CORS_ORIGINS="https://a.example,https://b.example" sh nginx/cors-origins.sh [TARGET]
set -eu
set -f  # `*` is an origin here, never a file pattern

target=${1:-/etc/nginx/cors-origins.conf}
entries=""
old_ifs=$IFS
IFS=,
for origin in ${CORS_ORIGINS:-}; do
    origin=$(printf '%s' "$origin" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    case "$origin" in
        "") continue ;;
        "*") entry='"~." "*";' ;;
        http://* | https://*)
            if printf '%s' "$origin" | grep -Eqv '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$'; then
                echo "cors-origins.sh: not an origin (scheme://host[:port]): $origin" >&2
                exit 1
            fi
            entry="\"$origin\" \$http_origin;"
            ;;
        *)
            echo "cors-origins.sh: not an origin (scheme://host[:port]): $origin" >&2
            exit 1
            ;;
    esac
    entries="$entries$entry
"
done
IFS=$old_ifs
printf '# Written by cors-origins.sh from CORS_ORIGINS; do not edit.\n%s' "$entries" > "$target.tmp"
mv "$target.tmp" "$target"
