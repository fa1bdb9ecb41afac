#!/usr/bin/env bash
# Prove that a packaged pipeline installs and loads BY NAME in a brand-new
# virtualenv (no --system-site-packages): plugin + wheel from scratch.
#
#   bash scripts/check_package_install.sh PLUGIN_REQUIREMENT WHEEL PIPELINE_NAME
#   bash scripts/check_package_install.sh . packages/en_ewt_lstm_tagger-0.1.0/dist/en_ewt_lstm_tagger-0.1.0-py3-none-any.whl en_ewt_lstm_tagger
#
# PLUGIN_REQUIREMENT is what pip installs as spacy-lstm-tagger ("." = this
# checkout). torch is pinned first (torch==2.13.0) so pip picks the CPU build
# instead of resolving a multi-GB CUDA one. Set KEEP_VENV=1 to keep the venv.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 PLUGIN_REQUIREMENT WHEEL PIPELINE_NAME" >&2
    exit 2
fi
plugin=$1
wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
name=$3
[ -f "$wheel" ] || { echo "[check-package] ERROR: wheel $2 not found (run the package step)" >&2; exit 1; }
# a local path: make it absolute, as we pip install from another directory
if [ -e "$plugin" ]; then plugin=$(cd "$plugin" && pwd); fi
PYTHON=${PYTHON:-python}
venv=$(mktemp -d "${TMPDIR:-/tmp}/spacy-lstm-tagger-venv.XXXXXX")
[ "${KEEP_VENV:-0}" = 1 ] || trap 'rm -rf "$venv"' EXIT
start=$(date +%s)
echo "[check-package] fresh venv: $venv"
"$PYTHON" -m venv "$venv"
py="$venv/bin/python"
"$py" -c "import sys; assert sys.prefix != sys.base_prefix; import importlib.util as u; assert u.find_spec('spacy') is None, 'spacy visible in a fresh venv?'"
"$py" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$py" -m pip install --quiet --disable-pip-version-check "$plugin"
"$py" -m pip install --quiet --disable-pip-version-check "$wheel"
"$py" -m pip check
cd "$venv"  # not the project directory: nothing importable by accident
"$py" - "$name" <<'PY'
import sys
import importlib.metadata as md
import spacy
name = sys.argv[1]
reqs = md.requires(name) or []
print(f"[check-package] {name} {md.version(name)} requires: {reqs}")
assert any(r.replace("_", "-").lower().startswith("spacy-lstm-tagger") for r in reqs), reqs
nlp = spacy.load(name)
doc = nlp("The quick brown fox jumped over the lazy dog .")
print(f"[check-package] spacy {spacy.__version__}, spacy-lstm-tagger {md.version('spacy-lstm-tagger')} from {md.distribution('spacy-lstm-tagger').locate_file('')}")
print(f"[check-package] spacy.load({name!r}) -> {nlp.pipe_names}: {[(t.text, t.tag_) for t in doc]}")
assert all(t.tag_ for t in doc)
PY
echo "[check-package] OK: installed and loaded by name in a fresh venv in $(( $(date +%s) - start )) s"
