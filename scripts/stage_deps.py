"""The ``uwe/`` deps of each DVC stage, from the import closure of the notebook it runs (and of
a module its command runs with ``python -m``).

A stage re-runs (``dvc status``) when a module its notebook can reach changes, and only then
(``tests/test_pipeline_contract.py`` checks both directions for ``train`` and the one direction
for every stage). After moving or adding modules, this prints the stages whose ``uwe/`` deps
differ from the closure, and ``--write`` rewrites those lines of ``dvc.yaml`` in place (other
deps, comments and order of the file untouched).

    python scripts/stage_deps.py            # what differs; exit 1 if anything does
    python scripts/stage_deps.py --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from uwe.runtime import import_closure

CMD = re.compile(r"papermill(?: --cwd \S+)? (?P<nb>notebooks/[^ ]+\.ipynb)")
MODULE = re.compile(r"python -m (?P<mod>uwe(?:\.\w+)+)")  # a module the command runs itself


def stage_closure(root: Path, cmd: str, notebook: str) -> list[str]:
    """The ``uwe/`` files the notebook's code and the modules ``cmd`` runs with ``python -m``
    reach."""
    nb = json.loads((root / notebook).read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    code += "".join(f"\nimport {m['mod']}" for m in MODULE.finditer(cmd))
    return sorted(p.relative_to(root).as_posix() for p in import_closure(code))


def wanted(root: Path, dvc_yaml: Path) -> dict[str, list[str]]:
    """stage -> its sorted ``uwe/`` deps (stages that run a notebook)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        spec = stage.get("do", stage)
        cmd = str(spec.get("cmd", ""))
        m = CMD.search(cmd)
        if m:
            out[name] = stage_closure(root, cmd, m["nb"])
    return out


DEP = re.compile(r"^(?P<indent>\s*)- (?P<path>uwe/\S+)(?P<comment>\s+#.*)?\s*$")


def rewrite(text: str, want: dict[str, list[str]]) -> tuple[str, list[str]]:
    """``dvc.yaml`` text with each stage's run of ``- uwe/...`` dep lines replaced by its
    closure (a kept line keeps its comment) -> (new text, names of the stages changed)."""
    lines = text.splitlines(keepends=True)
    out, changed, stage, i = [], [], None, 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if m:
            stage = m[1]
        dep = DEP.match(line)
        if dep and stage in want:
            j = i
            while j < len(lines) and DEP.match(lines[j]):
                j += 1
            old = {DEP.match(ln)["path"]: DEP.match(ln)["comment"] or "" for ln in lines[i:j]}
            if list(old) != want[stage]:
                changed.append(stage)
            out += [f"{dep['indent']}- {p}{old.get(p, '')}\n" for p in want[stage]]
            i = j
            continue
        out.append(line)
        i += 1
    return "".join(out), changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml")
    args = ap.parse_args()
    dvc_yaml = args.root / "dvc.yaml"
    text = dvc_yaml.read_text(encoding="utf-8")
    new, changed = rewrite(text, wanted(args.root.resolve(), dvc_yaml))
    for name in changed:
        print(f"{name}: uwe/ deps differ from its notebook's import closure")
    if args.write and changed:
        dvc_yaml.write_text(new, encoding="utf-8")
        print(f"rewrote {len(changed)} stage(s) in {dvc_yaml}")
    elif changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
