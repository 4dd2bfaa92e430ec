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
# staticcheck runs its default checks.
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

# staticcheck must be built by the Go that builds the project (it refuses
# a module newer than its own toolchain): one build per Go version.
staticcheck_bin() {
	local gover dir
	gover=$("$GO" env GOVERSION) || die "$GO env GOVERSION failed"
	dir=$tools/staticcheck-$STATICCHECK_VERSION-$gover
	if [[ ! -x "$dir/staticcheck" ]]; then
		log "building staticcheck $STATICCHECK_VERSION with $gover into $dir (once)"
		mkdir -p "$dir"
		GOTOOLCHAIN=$gover GOBIN=$dir "$GO" install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" >&2 ||
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

list=$(git ls-files --cached --others --exclude-standard -- '*.go') || die "git ls-files failed: is $root a git checkout you may read?"
[[ -n "$list" ]] || die "git lists no Go files in $root"
mapfile -t gofiles <<<"$list"
bad=$("$("$GO" env GOROOT)/bin/gofmt" -l "${gofiles[@]}")
[[ -z "$bad" ]] || die "gofmt needed on:"$'\n'"$bad"

"$GO" vet ./...

sc=$(staticcheck_bin)
"$sc" ./...

shc=$(shellcheck_bin)
git ls-files >/dev/null || die "git ls-files failed"
mapfile -t scripts < <(shell_scripts)
((${#scripts[@]} > 0)) || die "no shell scripts found: is this a git checkout?"
"$shc" -x "${scripts[@]}"

log "clean: gofmt, go vet, staticcheck $STATICCHECK_VERSION, shellcheck on ${#scripts[@]} scripts"
