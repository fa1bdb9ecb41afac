"""The README's usage example runs as written."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_usage_example_runs(tmp_path):
    text = README.read_text(encoding="utf8")
    match = re.search(r"<!-- usage-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "usage example block not found in README.md"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 14
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = [eval(line) for line in result.stdout.strip().splitlines()]
    assert len(first) == 4 and len(second) == 3
    labels = {"PRP", "VBP", "JJ", "NNS", "VB", "NN"}
    assert set(first) <= labels and set(second) <= labels
    assert (tmp_path / "my_tagger" / "lstm_tagger" / "model").exists()
