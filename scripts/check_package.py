"""Quick check of a packaged pipeline wheel and the plugin's own wheel (run by
the `package` step):

1. the pipeline wheel's metadata declares its dependency on spacy-lstm-tagger;
2. both wheels, installed together (pip --target into a temporary directory,
   --no-deps), load with ``spacy.load(name)`` -- by name, in a fresh process
   that does not see the project directory -- and tag a sentence, with the
   component's code imported from the plugin wheel; the presets of
   ``init-config`` are in that wheel too.

    python scripts/check_package.py packages/en_x-0.1.0/dist/en_x-0.1.0-py3-none-any.whl en_x \
        --plugin-wheel dist/spacy_lstm_tagger-0.1.0-py3-none-any.whl

spaCy, torch and the other dependencies come from the current environment.
For the full proof in a brand-new virtualenv, see
scripts/check_package_install.sh (`python -m spacy project run check-package`).
"""
import argparse
import email.parser
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List

PLUGIN = "spacy-lstm-tagger"
SENTENCE = "The quick brown fox jumped over the lazy dog ."
LOAD = """
import json, sys, spacy, spacy_lstm_tagger
from spacy_lstm_tagger.presets import preset_names
nlp = spacy.load(sys.argv[1])
doc = nlp(sys.argv[2])
print(json.dumps({"pipeline": nlp.pipe_names, "module": type(nlp.get_pipe(nlp.pipe_names[-1])).__module__,
                  "tags": [t.tag_ for t in doc], "path": spacy.util.get_package_path(sys.argv[1]).as_posix(),
                  "plugin": spacy_lstm_tagger.__file__, "presets": preset_names()}))
"""


def requires_dist(wheel: Path) -> List[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(zf.read(name).decode("utf8"))
    return metadata.get_all("Requires-Dist") or []


def canonical(requirement: str) -> str:
    name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="the pipeline's wheel")
    parser.add_argument("name", help="the pipeline's package name, e.g. en_ewt_lstm_tagger")
    parser.add_argument("--plugin-wheel", type=Path, required=True, help="spacy-lstm-tagger's own wheel")
    args = parser.parse_args(argv)
    wheel, name, plugin_wheel = args.wheel, args.name, args.plugin_wheel
    for path, what in ((wheel, "pipeline wheel"), (plugin_wheel, "plugin wheel")):
        if not path.is_file():
            print(f"[check-package] ERROR: {what} {path} not found (run the `package` step)", file=sys.stderr)
            return 1
    reqs = requires_dist(wheel)
    print(f"[check-package] {wheel.name} Requires-Dist: {reqs}")
    if PLUGIN not in {canonical(r) for r in reqs}:
        print(f"[check-package] ERROR: the wheel does not declare a dependency on {PLUGIN}; "
              "is spacy-lstm-tagger installed (pip install -e .) where `spacy package` ran?", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as target:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
               "--disable-pip-version-check", "--target", target, str(plugin_wheel), str(wheel)]
        subprocess.run(pip, check=True)
        env = dict(os.environ, PYTHONPATH=target)
        out = subprocess.run([sys.executable, "-c", LOAD, name, SENTENCE], cwd=target, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            print(f"[check-package] ERROR: spacy.load({name!r}) failed", file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if not Path(result["plugin"]).resolve().is_relative_to(Path(target).resolve()):
            print(f"[check-package] ERROR: spacy_lstm_tagger was imported from {result['plugin']}, "
                  f"not from {plugin_wheel.name}", file=sys.stderr)
            return 1
        if not result["presets"]:
            print(f"[check-package] ERROR: {plugin_wheel.name} carries no init-config presets", file=sys.stderr)
            return 1
    n_tokens = len(SENTENCE.split())
    if len(result["tags"]) != n_tokens or not all(result["tags"]):
        print(f"[check-package] ERROR: expected {n_tokens} non-empty tags, got {result['tags']}", file=sys.stderr)
        return 1
    print(f"[check-package] spacy.load({name!r}) OK with {plugin_wheel.name}: pipeline {result['pipeline']}, "
          f"tags {result['tags']}, presets {result['presets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
