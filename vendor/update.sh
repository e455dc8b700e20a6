#!/usr/bin/env bash
# Rebuilds a vendored crate from a crates.io release and Switchboard's patches.
#
#   vendor/update.sh CRATE VERSION        move vendor/CRATE to upstream VERSION: fetch it, apply
#                                         vendor/patches/CRATE/*.patch (three-way where they no
#                                         longer apply cleanly), install it, refresh the patches
#                                         and upstream.env, run the crate's tests
#   vendor/update.sh --check CRATE        rebuild vendor/CRATE from the release and patches it
#                                         records and compare: exit 1 unless identical (diff -r)
#   vendor/update.sh --resume WORKDIR     continue after resolving a conflict in WORKDIR
#
# VENDOR_KEEP=1 keeps --check's work directory (a git repository: the release, then one commit
# per patch), to make a new patch from.
# CRATE is engineioxide, socketioxide, socketioxide-core or socketioxide-redis. Releases come from crates.io
# through cargo itself (a throw-away project pinning `CRATE = "=VERSION"`, `cargo fetch`), and
# the .crate file's sha256 is checked against the checksum cargo resolved. See vendor/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export GIT_AUTHOR_NAME=Switchboard GIT_AUTHOR_EMAIL=switchboard@localhost
export GIT_COMMITTER_NAME=Switchboard GIT_COMMITTER_EMAIL=switchboard@localhost
# Fixed dates, so refreshed patch files change only where their content does.
export GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z

die() { echo "update.sh: $*" >&2; exit 1; }

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# fetch NAME VERSION DEST: extracts the published crate into DEST; prints its checksum.
fetch() {
  local name=$1 version=$2 dest=$3 proj checksum file
  proj=$(mktemp -d)
  mkdir "$proj/src"
  : >"$proj/src/lib.rs"
  cat >"$proj/Cargo.toml" <<EOF
[package]
name = "vendor-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
$name = { version = "=$version", default-features = false }
EOF
  cargo fetch --quiet --manifest-path "$proj/Cargo.toml" >&2
  checksum=$(awk -v n="name = \"$name\"" -v v="version = \"$version\"" '
    /^\[\[package\]\]/ { pkg = 0; ver = 0 }
    $0 == n { pkg = 1 }
    pkg && $0 == v { ver = 1 }
    pkg && ver && /^checksum = / { gsub(/"/, "", $3); print $3; exit }' "$proj/Cargo.lock")
  [ -n "$checksum" ] || die "no checksum for $name $version in the resolved Cargo.lock"
  file=$(ls "$CARGO_HOME"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -1)
  [ -n "$file" ] || die "cargo fetched $name $version but its .crate is not in $CARGO_HOME/registry/cache"
  echo "$checksum  $file" | sha256sum --check --quiet >&2 || die "$file does not match checksum $checksum"
  mkdir -p "$dest"
  tar -xzf "$file" -C "$dest" --strip-components=1
  rm -rf "$proj"
  echo "$checksum"
}

# import WORK NAME VERSION EXCLUDE: commits the release, minus EXCLUDE, as WORK's tree.
import() {
  local work=$1 name=$2 version=$3 exclude=$4 sum
  git -C "$work" rm -rfq --ignore-unmatch . >/dev/null
  sum=$(fetch "$name" "$version" "$work")
  for path in $exclude; do rm -rf "${work:?}/$path"; done
  # -f: a .gitignore the crate ships must not hide its own files.
  git -C "$work" add -f -A .
  git -C "$work" commit -qm "upstream $name $version"
  echo "$sum"
}

patches() { ls "$ROOT/vendor/patches/$1"/[0-9][0-9][0-9][0-9]-*.patch; }

# The patch's subject line (format-patch folds long ones onto indented lines).
subject() {
  awk '/^Subject: / { s = $0; sub(/^Subject: \[PATCH\] /, "", s)
                      while ((getline line) > 0 && line ~ /^ /) s = s line
                      print s; exit }' "$1"
}

# apply_from WORK INDEX: applies the crate's patches from number INDEX on, three-way when
# needed; on a conflict, stops and tells how to go on.
apply_from() {
  local work=$1 from=$2 i=0 p
  local crate; crate=$(cat "$work/.git/vendor-crate")
  while read -r p; do
    i=$((i + 1))
    [ "$i" -ge "$from" ] || continue
    if git -C "$work" apply --index "$p" 2>/dev/null; then
      :
    elif git -C "$work" apply --3way "$p"; then
      echo "update.sh: $(basename "$p") applied with a three-way merge" >&2
    else
      echo "$((i + 1))" >"$work/.git/vendor-next"
      echo "$(basename "$p")" >"$work/.git/vendor-conflict"
      cat >&2 <<EOF
update.sh: $(basename "$p") does not apply to the new release.
  Resolve the conflicts in $work (git -C $work status; keep the patch's intent, see
  vendor/$crate/PATCHES.md), stage the result (git -C $work add -A), then run:
    vendor/update.sh --resume $work
EOF
      exit 1
    fi
    git -C "$work" commit -qm "$(subject "$p")"
  done < <(patches "$crate")
}

# finish WORK: installs the result into vendor/CRATE, refreshes the patches, runs the tests.
finish() {
  local work=$1 crate version checksum exclude base out names i
  crate=$(cat "$work/.git/vendor-crate")
  version=$(cat "$work/.git/vendor-version")
  checksum=$(cat "$work/.git/vendor-checksum")
  exclude=$(cat "$work/.git/vendor-exclude")
  base=$(git -C "$work" rev-parse vendor-base)
  # The patches, rebased onto the new release (same names, same order).
  out=$(mktemp -d)
  git -C "$work" format-patch -q --zero-commit --full-index --no-signature -N -o "$out" "$base..HEAD"
  mapfile -t names < <(patches "$crate" | xargs -n1 basename)
  i=0
  for p in "$out"/*.patch; do
    cp "$p" "$ROOT/vendor/patches/$crate/${names[$i]}"
    i=$((i + 1))
  done
  cat >"$ROOT/vendor/patches/$crate/upstream.env" <<EOF
# The crates.io release vendor/$crate is made from, read by vendor/update.sh (which rewrites it).
version=$version
# sha256 of the .crate file, as crates.io's index and Cargo.lock record it.
checksum=$checksum
# Files of the published crate that vendor/$crate leaves out (paths in the crate, space-separated).
exclude="$exclude"
EOF
  # The tree itself, keeping the documentation of the patches.
  cp "$ROOT/vendor/$crate/PATCHES.md" "$out/PATCHES.md"
  rm -rf "${ROOT:?}/vendor/$crate"
  mkdir "$ROOT/vendor/$crate"
  git -C "$work" archive HEAD | tar -x -C "$ROOT/vendor/$crate"
  cp "$out/PATCHES.md" "$ROOT/vendor/$crate/PATCHES.md"
  rm -rf "$out"
  echo "update.sh: vendor/$crate is now $crate $version with its patches; running its tests" >&2
  (cd "$ROOT" && cargo test -p "$crate")
  cat >&2 <<EOF
update.sh: done. Still to do by hand (vendor/README.md):
  - vendor/$crate/PATCHES.md: the version in its title and first paragraph;
  - the dependency in Cargo.toml if the release is a new minor version, then cargo build;
  - the whole suite (bash tests/run-all.sh 10 20 30 40 50) and the benchmarks;
  - git add vendor/ && git commit.
Work directory (upstream and patches as commits): $work
EOF
}

main() {
  [ $# -ge 1 ] || usage
  case "$1" in
    --resume)
      [ $# -eq 2 ] || usage
      local work=$2
      [ -f "$work/.git/vendor-next" ] || die "$work is not a stopped update"
      git -C "$work" commit -qm "$(subject "$ROOT/vendor/patches/$(cat "$work/.git/vendor-crate")/$(cat "$work/.git/vendor-conflict")")"
      apply_from "$work" "$(cat "$work/.git/vendor-next")"
      finish "$work"
      return
      ;;
    --check) [ $# -eq 2 ] || usage; local mode=check crate=$2 ;;
    -*) usage ;;
    *) [ $# -eq 2 ] || usage; local mode=update crate=$1 new=$2 ;;
  esac
  [ -f "$ROOT/vendor/patches/$crate/upstream.env" ] || die "unknown crate $crate (no vendor/patches/$crate/upstream.env)"
  local version checksum exclude
  # shellcheck disable=SC1090
  . "$ROOT/vendor/patches/$crate/upstream.env"
  local work sum
  work=$(mktemp -d "${TMPDIR:-/tmp}/vendor-$crate.XXXXXX")
  git -C "$work" init -q
  echo "$crate" >"$work/.git/vendor-crate"
  echo "$exclude" >"$work/.git/vendor-exclude"
  # The recorded release with the patches as they are: the result for --check, and the patches'
  # pre-images in the object store, which a three-way apply onto a new release needs.
  sum=$(import "$work" "$crate" "$version" "$exclude")
  [ "$sum" = "$checksum" ] || die "crates.io's $crate $version has checksum $sum, upstream.env records $checksum"
  git -C "$work" tag vendor-base
  echo 1 >"$work/.git/vendor-next"
  while read -r p; do
    git -C "$work" apply --index "$p" || die "$(basename "$p") no longer applies to $crate $version: the patches and vendor/$crate disagree"
    git -C "$work" commit -qm "$(subject "$p")"
  done < <(patches "$crate")
  if [ "$mode" = check ]; then
    cp "$ROOT/vendor/$crate/PATCHES.md" "$work/PATCHES.md"
    if diff -r --exclude=.git "$work" "$ROOT/vendor/$crate"; then
      echo "update.sh: vendor/$crate is exactly $crate $version (checksum $checksum) plus its $(patches "$crate" | wc -l) patches"
      if [ -n "${VENDOR_KEEP:-}" ]; then
        echo "update.sh: work directory (release and patches as commits): $work"
      else
        rm -rf "$work"
      fi
    else
      die "vendor/$crate differs from $crate $version plus its patches (rebuilt tree: $work)"
    fi
    return
  fi
  echo "$new" >"$work/.git/vendor-version"
  if [ "$new" != "$version" ]; then
    git -C "$work" checkout -q --orphan "upstream-$new"
    sum=$(import "$work" "$crate" "$new" "$exclude")
    git -C "$work" tag -f vendor-base >/dev/null
    apply_from "$work" 1
  fi
  echo "$sum" >"$work/.git/vendor-checksum"
  finish "$work"
}

main "$@"
