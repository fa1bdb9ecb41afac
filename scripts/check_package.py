"""Quick check of a packaged pipeline wheel (run by the `package` step):

1. the wheel's metadata declares its dependency on spacy-lstm-tagger;
2. installed on its own (pip --target into a temporary directory, --no-deps),
   it loads with ``spacy.load(name)`` -- by name, in a fresh process that does
   not see the project directory -- and tags a sentence.

    python scripts/check_package.py packages/en_x-0.1.0/dist/en_x-0.1.0-py3-none-any.whl en_x

This uses the plugin installed in the current environment. For the full proof
in a brand-new virtualenv, see scripts/check_package_install.sh
(`python -m spacy project run check-package`).
"""
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
import json, sys, spacy
nlp = spacy.load(sys.argv[1])
doc = nlp(sys.argv[2])
print(json.dumps({"pipeline": nlp.pipe_names, "module": type(nlp.get_pipe(nlp.pipe_names[-1])).__module__,
                  "tags": [t.tag_ for t in doc], "path": spacy.util.get_package_path(sys.argv[1]).as_posix()}))
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
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    wheel, name = Path(argv[0]), argv[1]
    if not wheel.is_file():
        print(f"[check-package] ERROR: wheel {wheel} not found (run the `package` step)", file=sys.stderr)
        return 1
    reqs = requires_dist(wheel)
    print(f"[check-package] {wheel.name} Requires-Dist: {reqs}")
    if PLUGIN not in {canonical(r) for r in reqs}:
        print(f"[check-package] ERROR: the wheel does not declare a dependency on {PLUGIN}; "
              "is spacy-lstm-tagger installed (pip install -e .) where `spacy package` ran?", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as target:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
               "--disable-pip-version-check", "--target", target, str(wheel)]
        subprocess.run(pip, check=True)
        env = dict(os.environ, PYTHONPATH=target)
        out = subprocess.run([sys.executable, "-c", LOAD, name, SENTENCE], cwd=target, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            print(f"[check-package] ERROR: spacy.load({name!r}) failed", file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
    n_tokens = len(SENTENCE.split())
    if len(result["tags"]) != n_tokens or not all(result["tags"]):
        print(f"[check-package] ERROR: expected {n_tokens} non-empty tags, got {result['tags']}", file=sys.stderr)
        return 1
    print(f"[check-package] spacy.load({name!r}) OK: pipeline {result['pipeline']}, tags {result['tags']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
