"""Train a character-level Markov model on the Zen of Python (models/chars.json); no download.

For each context of 0 to ORDER characters, the model counts which character follows it in the
text. It takes well under a second: the text ships with Python (``import this``).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

ORDER = 4


def corpus() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing it prints the Zen
        import this
    return codecs.decode(this.s, "rot13")  # its text is rot13-encoded


def build(out: Path) -> None:
    text = corpus()
    counts: list[dict[str, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(ORDER + 1)
    ]
    for end in range(len(text)):
        for order in range(ORDER + 1):
            if end - order < 0:
                break
            counts[order][text[end - order : end]][text[end]] += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    model = {"order": ORDER, "counts": [{k: dict(v) for k, v in level.items()} for level in counts]}
    out.write_text(json.dumps(model))


if __name__ == "__main__":
    target = Path(__file__).parent / "models" / "chars.json"
    if "--force" in sys.argv or not target.exists():
        build(target)
        print(f"built {target}")
