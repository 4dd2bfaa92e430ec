#!/usr/bin/env bash
# lint.sh: the checks of `make lint` (and of `make test`, which runs it
# first), each of which must print nothing:
#
#   - gofmt -l on every Go file git tracks or would track;
#   - go vet ./...;
#   - staticcheck: honnef.co/go/tools at $STATICCHECK_VERSION, built once
#     into .cache/tools/ with the go command (GO, default go);
#   - ShellCheck (-x) on every shell script git tracks: Debian's package,
#     installed with apt-get when missing and this runs as root.
#
# The staticcheck checks are its defaults; the few left out are named in
# staticcheck.conf at the repository's root, each with its reason.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
GO=${GO:-go}
STATICCHECK_VERSION=v0.8.2
tools=$root/.cache/tools

log() { echo "lint: $*" >&2; }
die() {
	log "$*"
	exit 1
}

staticcheck_bin() {
	local dir=$tools/staticcheck-$STATICCHECK_VERSION
	if [[ ! -x "$dir/staticcheck" ]]; then
		log "building staticcheck $STATICCHECK_VERSION into $dir (once)"
		mkdir -p "$dir"
		GOBIN=$dir "$GO" install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" >&2 ||
			die "go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION failed"
	fi
	echo "$dir/staticcheck"
}

shellcheck_bin() {
	if ! command -v shellcheck >/dev/null 2>&1; then
		if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
			log "installing shellcheck from Debian's packages"
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; } >&2 ||
				die "apt-get install shellcheck failed"
		else
			die "shellcheck is not installed: apt-get install shellcheck (as root), or see https://www.shellcheck.net"
		fi
	fi
	command -v shellcheck
}

# Shell scripts: *.sh, and tracked files whose first line runs bash or sh.
shell_scripts() {
	git ls-files -z | while IFS= read -r -d '' f; do
		[[ -f "$f" ]] || continue
		if [[ "$f" == *.sh ]] || head -n 1 -- "$f" | grep -qE '^#!(/usr/bin/env (ba)?sh|/bin/(ba)?sh)'; then
			printf '%s\n' "$f"
		fi
	done
}

mapfile -t gofiles < <(git ls-files --cached --others --exclude-standard -- '*.go')
bad=$(gofmt -l "${gofiles[@]}")
[[ -z "$bad" ]] || die "gofmt needed on:"$'\n'"$bad"

"$GO" vet ./...

sc=$(staticcheck_bin)
"$sc" ./...

shc=$(shellcheck_bin)
mapfile -t scripts < <(shell_scripts)
((${#scripts[@]} > 0)) || die "no shell scripts found: is this a git checkout?"
"$shc" -x "${scripts[@]}"

log "clean: gofmt, go vet, staticcheck $STATICCHECK_VERSION, shellcheck on ${#scripts[@]} scripts"
