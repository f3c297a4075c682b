"""The README's usage example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs():
    text = (ROOT / "README.md").read_text()
    example = re.search(r"## Use\n\n```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)  # noqa: S102
    for name in ("depth_hr", "trained"):
        result = scope[name]
        assert result.shape == (496, 736) and np.isfinite(result).all()
        blocks = result.reshape(62, 8, 92, 8).mean(axis=(1, 3))
        measured = np.isfinite(scope["depth_lr"])
        np.testing.assert_allclose(blocks[measured], scope["depth_lr"][measured], rtol=1e-4)


def test_the_layout_map_names_only_what_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    block = re.search(r"## Layout\n\n```\n(.*?)```", text, re.S).group(1)
    named = set(re.findall(r"(?:node_dada|docs|configs|benchmarks|results|notebooks|tests)"
                           r"/[\w./]*", block))
    named |= {f"node_dada/{name}" for name in re.findall(r"\b(\w+\.py)\b", block)}
    named |= {f"docs/{name}" for name in re.findall(r"\b(\w+\.md)\b", block)}
    missing = sorted(p for p in named if not (root / p).exists()
                     and not (root / "node_dada" / "data" / Path(p).name).exists()
                     and not (root / "node_dada" / "models" / Path(p).name).exists()
                     and not (root / "node_dada" / "diffusion" / Path(p).name).exists()
                     and not (root / "configs" / Path(p).name).exists())
    assert missing == []
