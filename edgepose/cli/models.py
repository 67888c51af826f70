"""`edgepose models`: list the models edgepose can load

List every model edgepose can load: family, precisions, input sizes, Edge TPU status, files and
licence, and the folder the files are found in.
"""

from __future__ import annotations

import argparse
import json

from ..errors import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    from ..estimators import DEFAULT_MODEL, MODELS, models_dir

    folder = models_dir()
    rows = []
    for spec in MODELS.values():
        present = [name for name in spec.files if (folder / name).is_file()]
        rows.append({
            "name": spec.name, "family": spec.family, "summary": spec.summary,
            "precisions": list(spec.precisions), "input": spec.input_rule, "edgetpu": spec.edgetpu,
            "licence": spec.licence, "files": spec.files, "files_present": present,
            "default": spec.name == DEFAULT_MODEL,
            "cpu_default": ("int8 where the runtime runs int8 fast (ai-edge-litert), else the float build"
                            if spec.int8_on_cpu else
                            "the float build on every runtime (its int8 build scores below the reference)"),
        })
    if args.json:
        print(json.dumps({"models_dir": str(folder), "models": rows}, indent=2))
        return ExitCode.OK
    print(f"models in {folder}:")
    for row in rows:
        default = "  [default]" if row["default"] else ""
        print(f"\n{row['name']}  ({row['family']}) {row['summary']}{default}")
        print(f"  precisions: {', '.join(row['precisions'])}; on a CPU by default: {row['cpu_default']}")
        print(f"  input:      {row['input']}")
        print(f"  Edge TPU:   {row['edgetpu']}")
        print(f"  licence:    {row['licence']} (weights; see models/LICENSE-weights.md)")
        for name in row["files"]:
            print(f"  file:       {name}{'' if name in row['files_present'] else '  (missing)'}")
    return ExitCode.OK
