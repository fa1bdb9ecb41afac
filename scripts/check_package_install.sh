#!/usr/bin/env bash
# Prove that the two wheels the `package` step builds -- the plugin's own
# (dist/) and the pipeline's (packages/) -- install into a brand-new virtualenv
# (no --system-site-packages) and that the pipeline loads BY NAME.
#
#   bash scripts/check_package_install.sh PLUGIN_WHEEL PIPELINE_WHEEL PIPELINE_NAME
#   bash scripts/check_package_install.sh dist/spacy_lstm_tagger-0.1.0-py3-none-any.whl \
#       packages/en_ewt_lstm_tagger-0.1.0/dist/en_ewt_lstm_tagger-0.1.0-py3-none-any.whl en_ewt_lstm_tagger
#
# Only spaCy, torch and their dependencies come from the package index. torch
# is pinned first (torch==2.13.0) so pip picks the CPU build instead of
# resolving a multi-GB CUDA one. Set KEEP_VENV=1 to keep the venv.
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 PLUGIN_WHEEL PIPELINE_WHEEL PIPELINE_NAME" >&2
    exit 2
fi
for w in "$1" "$2"; do
    [ -f "$w" ] || { echo "[check-package] ERROR: wheel $w not found (run the package step)" >&2; exit 1; }
done
# absolute paths: we pip install from another directory
plugin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
name=$3
PYTHON=${PYTHON:-python}
venv=$(mktemp -d "${TMPDIR:-/tmp}/spacy-lstm-tagger-venv.XXXXXX")
[ "${KEEP_VENV:-0}" = 1 ] || trap 'rm -rf "$venv"' EXIT
start=$(date +%s)
echo "[check-package] fresh venv: $venv"
"$PYTHON" -m venv "$venv"
py="$venv/bin/python"
"$py" -c "import sys; assert sys.prefix != sys.base_prefix; import importlib.util as u; assert u.find_spec('spacy') is None, 'spacy visible in a fresh venv?'"
"$py" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$py" -m pip install --quiet --disable-pip-version-check "$plugin" "$wheel"
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
from spacy_lstm_tagger.presets import init_config, preset_names
assert "efficiency" in preset_names(), preset_names()
assert "[components.lstm_tagger.model]" in init_config("accuracy", "-")
print(f"[check-package] init-config presets in the wheel: {preset_names()}")
print(f"[check-package] spacy.load({name!r}) -> {nlp.pipe_names}: {[(t.text, t.tag_) for t in doc]}")
assert all(t.tag_ for t in doc)
PY
echo "[check-package] OK: installed and loaded by name in a fresh venv in $(( $(date +%s) - start )) s"
