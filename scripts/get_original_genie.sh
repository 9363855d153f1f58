#!/usr/bin/env bash
# Export the original Genie's model code (aqlaboratory/genie, Lin & AlQuraishi 2023) into
# .original_genie/ at the repository root (git-ignored), for benchmarks/bench_original_genie.py.
#
# Usage: scripts/get_original_genie.sh [SOURCE [COMMIT]]
#   SOURCE  a local clone of aqlaboratory/genie (bare or not), or a git URL to clone
#           (default https://github.com/aqlaboratory/genie.git)
#   COMMIT  the commit to export (default: the one pinned below, the head of main on 2024-04-21)
#   ORIGINAL_GENIE_DIR (environment) the folder to export into (default .original_genie at the
#           repository root; it is replaced)
#
# Only the Python files that the denoiser and its training/sampling module import are exported:
# genie/{__init__,config}.py, genie/diffusion/, genie/model/ and five files of genie/utils/ (the
# data loaders, train.py and sample.py, which need wandb and the SCOPe files, are left out), plus
# their licence and the two published SCOPe model configurations. Their package is also called
# `genie`, so the copy is renamed `genie_original` and its absolute imports are rewritten
# (`from genie.x` -> `from genie_original.x`); nothing else in their code is changed. The result,
# about 100 KB, needs torch, numpy, scipy, tqdm and pytorch_lightning, and no network.
set -euo pipefail

PINNED_COMMIT=42e4c996d6e0e1f8c4987b2db84f133f66f8ad4c
SOURCE=${1:-https://github.com/aqlaboratory/genie.git}
COMMIT=${2:-$PINNED_COMMIT}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${ORIGINAL_GENIE_DIR:-$ROOT/.original_genie}

fail() {
	echo "get_original_genie.sh: error: $*" >&2
	exit 2
}

if [ -e "$DEST" ] && [ ! -f "$DEST/source.json" ]; then
	fail "$DEST exists and is not an earlier export (no source.json): remove it or choose another"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ -d "$SOURCE" ]; then
	GIT_DIR_OF_SOURCE=$(git -C "$SOURCE" rev-parse --absolute-git-dir 2>/dev/null) ||
		fail "$SOURCE is not a git repository"
else
	git clone --quiet --bare --filter=blob:limit=1m "$SOURCE" "$TMP/source.git" || fail "could not clone $SOURCE"
	GIT_DIR_OF_SOURCE="$TMP/source.git"
fi
src_git() { git --git-dir="$GIT_DIR_OF_SOURCE" "$@"; }
src_git cat-file -e "$COMMIT^{commit}" 2>/dev/null || fail "commit $COMMIT is not in $SOURCE"
COMMIT=$(src_git rev-parse "$COMMIT^{commit}")

PATHS=(
	LICENSE.md
	genie/__init__.py
	genie/config.py
	genie/diffusion
	genie/model
	genie/utils/__init__.py
	genie/utils/affine_utils.py
	genie/utils/encoding.py
	genie/utils/geo_utils.py
	genie/utils/loss.py
	genie/utils/tensor_utils.py
	weights/scope_l_128/configuration
	weights/scope_l_256/configuration
)
mkdir -p "$TMP/tree" "$TMP/out/configs"
for path in "${PATHS[@]}"; do
	listed=$(src_git ls-tree -r --name-only "$COMMIT" -- "$path")
	[ -n "$listed" ] || fail "commit $COMMIT has no $path"
	while IFS= read -r file; do
		mkdir -p "$TMP/tree/$(dirname "$file")"
		src_git cat-file blob "$COMMIT:$file" >"$TMP/tree/$file"
	done <<<"$listed"
done

mv "$TMP/tree/genie" "$TMP/out/genie_original"
mv "$TMP/tree/LICENSE.md" "$TMP/out/LICENSE.md"
for name in scope_l_128 scope_l_256; do
	mv "$TMP/tree/weights/$name/configuration" "$TMP/out/configs/$name"
done
find "$TMP/out/genie_original" -type f ! -name '*.py' -delete

# Rename the package in its absolute imports (from genie.x / import genie.x), and check that no
# import of `genie` is left, which would load our package instead of theirs.
find "$TMP/out/genie_original" -name '*.py' -exec sed -i -E \
	's/^([[:space:]]*)(from|import)[[:space:]]+genie([.[:space:]])/\1\2 genie_original\3/' {} +
if grep -rnE '^[[:space:]]*(from|import)[[:space:]]+genie([.[:space:]]|$)' "$TMP/out/genie_original"; then
	fail "imports of 'genie' left in the export (above)"
fi

FILES=$(find "$TMP/out/genie_original" -name '*.py' | wc -l)
cat >"$TMP/out/source.json" <<EOF
{
  "repository": "aqlaboratory/genie",
  "source": "$SOURCE",
  "commit": "$COMMIT",
  "commit_date": "$(src_git log -1 --format=%cI "$COMMIT")",
  "package": "genie_original",
  "python_files": $FILES,
  "changes": "package genie renamed genie_original in its absolute imports; nothing else"
}
EOF

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$TMP/out" "$DEST"
echo "exported aqlaboratory/genie $COMMIT ($FILES Python files, $(du -sh "$DEST" | cut -f1)) to $DEST"
