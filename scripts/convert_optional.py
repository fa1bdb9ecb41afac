"""`spacy convert` a CoNLL-U file only if it exists (the optional test split).

    python scripts/convert_optional.py assets/en_ewt-ud-test.conllu corpus --converter conllu -n 10

Extra arguments go to `spacy convert`. When the input is absent, a converted
file left over from an earlier run is removed, so `evaluate` never scores a
stale split.
"""
import subprocess
import sys
from pathlib import Path


def main(argv) -> int:
    if len(argv) < 2:
        print("usage: convert_optional.py INPUT.conllu OUTPUT_DIR [spacy convert options]", file=sys.stderr)
        return 2
    src, out_dir, extra = Path(argv[0]), Path(argv[1]), argv[2:]
    converted = out_dir / (src.stem + ".spacy")
    if not src.exists():
        if converted.exists():
            converted.unlink()
        print(f"[convert] {src} not present (optional): skipped; `evaluate` will score dev")
        return 0
    cmd = [sys.executable, "-m", "spacy", "convert", str(src), str(out_dir), *extra]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
